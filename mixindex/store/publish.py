"""Publishing an index: move the finished temporary folder to OUT so that OUT is never missing
and only an index is ever replaced; clean up after builds that were killed.

On Linux, ``renameat2`` does each move in one step. ``RENAME_NOREPLACE`` publishes only if
nothing appeared at OUT meanwhile, so of two builds racing for a new OUT exactly one wins.
``RENAME_EXCHANGE`` swaps the new index with the old one, so OUT holds one whole index at every
moment; what was swapped out is checked to be an index before it is removed (and swapped back if
it is not). Where ``renameat2`` is missing or the file system refuses it, a lock file serialises
mixindex processes and two renames replace the old index: a crash between them leaves it at
``.NAME.old-TOKEN``, and the next build of OUT puts it back.

Temporary folders are named ``.NAME.tmp-TOKEN``, where TOKEN is ``PID-START-HOST`` (process id,
its start time where the system tells it, and a hash of the host name), so that a later build
can tell a leftover of a dead process from the folder of a live one, even when the process id
has been reused. SIGTERM during a build raises :class:`BuildTerminated` (a ``KeyboardInterrupt``),
so the cleanup that Ctrl-C runs runs for it too.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mixindex.errors import BuildTerminated, IndexExistsError
from mixindex.store.output import INDEX_ENTRIES, describe, is_index

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
# How long a build waits for another build's publishing lock (fallback only; held for moments).
LOCK_WAIT_SECONDS = 60.0


# ---- process tokens ------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None if unknown/gone.
    A zombie counts as gone: it will never write or rename anything again."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def process_token() -> str:
    """``PID-START-HOST`` for this process (START is 0 where the system does not tell it)."""
    pid = os.getpid()
    return f"{pid}-{_start_time(pid) or 0}-{_host()}"


_TOKEN = re.compile(r"(\d+)-(\d+)-([0-9a-f]{8})")
_LEGACY = re.compile(r"\d+")  # older mixindex named its folders .NAME.tmp-PID / .NAME.old-PID


def _alive(pid: int, start: int) -> bool:
    """Whether process ``pid`` (started at ``start``, 0 if unknown) may still be running."""
    if os.name == "nt":
        return True  # no safe liveness probe there (os.kill would end the process): keep
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else
    if sys.platform.startswith("linux"):
        now = _start_time(pid)
        if now is None:
            return False
        return start in (0, now)
    return True


def _owner_gone(token: str) -> int | None:
    """The process id in ``token`` if that process is gone for sure, else None."""
    m = _TOKEN.fullmatch(token)
    if m:
        pid, start, host = int(m[1]), int(m[2]), m[3]
        if host != _host():
            return None  # another machine's build (a shared file system): not ours to judge
    elif _LEGACY.fullmatch(token):
        pid, start = int(token), 0
    else:
        return None
    return None if _alive(pid, start) else pid


# ---- names beside OUT ----------------------------------------------------------------------


def tmp_path(out: Path) -> Path:
    """Where this process writes the index before publishing it at ``out``."""
    return out.with_name(f".{out.name}.tmp-{process_token()}")


def _old_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.old-{process_token()}")


def _lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def _looks_like_ours(path: Path) -> bool:
    """A real folder holding only what an index writer creates (a partly removed one too)."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        return set(os.listdir(path)) <= INDEX_ENTRIES
    except OSError:
        return False


def discard(tmp: Path) -> None:
    """Remove a build's temporary folder, unless something else has taken its place (a swap
    that could not be undone: what a user had at OUT is never removed)."""
    if _looks_like_ours(tmp):
        shutil.rmtree(tmp, ignore_errors=True)


def _say(message: str) -> None:
    print(f"mixindex: {message}", file=sys.stderr, flush=True)


def dead_temp_folders(out: Path) -> list[Path]:
    """The temporary folders of builds of ``out`` whose process is gone (same host) and that
    hold only index files: what :func:`clean_leftovers` removes, and a resumed build adopts."""
    prefix = f".{out.name}.tmp-"
    try:
        names = sorted(n for n in os.listdir(out.parent) if n.startswith(prefix))
    except OSError:
        return []
    paths = [out.parent / n for n in names]
    return [
        p for p in paths if _owner_gone(p.name[len(prefix) :]) is not None and _looks_like_ours(p)
    ]


def clean_leftovers(out: Path, say: Callable[[str], None] = _say) -> list[Path]:
    """Remove the temporary folders (and publishing lock) that dead builds of ``out`` left.

    Only folders named like ours for this ``out``, holding only index files, whose process is
    gone (same host) are touched. An ``.old-`` folder holding a whole index is put back at
    ``out`` when ``out`` is missing (a crash between the two renames of the fallback). Each
    action is reported through ``say``; returns the paths removed or restored.
    """
    folder = out.parent
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    done = []
    for kind in ("old", "tmp"):
        prefix = f".{out.name}.{kind}-"
        for name in sorted(n for n in names if n.startswith(prefix)):
            path = folder / name
            pid = _owner_gone(name[len(prefix) :])
            if pid is None or not _looks_like_ours(path):
                continue
            if kind == "old" and not os.path.lexists(out) and is_index(path):
                try:
                    os.rename(path, out)
                except OSError:
                    continue
                say(
                    f"restored the index {str(out)!r} from {str(path)!r}, left by build "
                    f"process {pid}, which is no longer running"
                )
            else:
                shutil.rmtree(path, ignore_errors=True)
                say(
                    f"removed {str(path)!r}, left by build process {pid}, which is no longer "
                    "running"
                )
            done.append(path)
    lock = _lock_path(out)
    owner = _read_owner(lock)
    pid = _owner_gone(owner) if owner else None
    if pid is not None:
        lock.unlink(missing_ok=True)
        say(f"removed {str(lock)!r}, left by build process {pid}, which is no longer running")
        done.append(lock)
    return done


def _read_owner(lock: Path) -> str:
    try:
        return lock.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return ""


# ---- renameat2 -----------------------------------------------------------------------------


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def _rename2(src: Path, dst: Path, flags: int) -> int:
    """``renameat2(src, dst, flags)``: 0, or the errno it failed with."""
    # os.rename raises an audit event; this rename through ctypes raises the same one, so that
    # audit hooks see every move.
    sys.audit("os.rename", src, dst, None, None)
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return 0
    return ctypes.get_errno()


def _appeared(out: Path) -> IndexExistsError:
    return IndexExistsError(
        f"{str(out)!r} appeared while this build was running (another build wrote it); it was "
        "left as it is and this build's files were removed; pass --force to replace it"
    )


def _not_an_index(out: Path, what: str) -> IndexExistsError:
    return IndexExistsError(
        f"{str(out)!r} became {what} while this build was running, not a mixindex index; it was "
        "left as it is and this build's files were removed"
    )


class _Unsupported(Exception):
    """renameat2 is missing, or the file system does not take its flags."""


def publish(tmp: Path, out: Path, *, force: bool) -> None:
    """Move the finished index ``tmp`` to ``out`` (see the module doc for the guarantees).

    Without ``force``, an ``out`` that exists by now raises IndexExistsError; with it, only an
    index at ``out`` is replaced. On failure ``tmp`` holds this build's index again.
    """
    global _publishing
    # From here on SIGTERM no longer stops the build (see termination_guard): cleanup must never
    # run halfway through an exchange, and once the index is published the build is done.
    _publishing = True
    try:
        _publish_atomic(tmp, out, force)
    except _Unsupported:
        _publish_locked(tmp, out, force)


def _publish_atomic(tmp: Path, out: Path, force: bool) -> None:
    if _renameat2 is None:
        raise _Unsupported
    for _ in range(16):
        err = _rename2(tmp, out, _RENAME_NOREPLACE)
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise _Unsupported
        if err == 0:
            return
        if err != errno.EEXIST:
            raise OSError(err, os.strerror(err), str(out))
        if not force:
            raise _appeared(out)
        if not is_index(out):
            raise _not_an_index(out, describe(out))
        err = _rename2(tmp, out, _RENAME_EXCHANGE)
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise _Unsupported  # a file system that takes NOREPLACE but not EXCHANGE
        if err == errno.ENOENT:
            continue  # removed since we looked: publish without replacing
        if err:
            raise OSError(err, os.strerror(err), str(out))
        # ``tmp`` now holds what was at ``out``. Another process may have put something else
        # there after the check above; only an index may go.
        if not is_index(tmp):
            what = describe(tmp)
            if _rename2(tmp, out, _RENAME_EXCHANGE):
                raise IndexExistsError(
                    f"{str(out)!r} became {what} while this build was running and was swapped "
                    f"with the new index, which could not be undone: it is now at {str(tmp)!r} "
                    f"and the new index at {str(out)!r}; move them back by hand"
                )
            raise _not_an_index(out, what)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    raise IndexExistsError(
        f"{str(out)!r} kept changing while this build tried to publish; nothing was replaced"
    )


def _publish_locked(tmp: Path, out: Path, force: bool) -> None:
    old = _old_path(out)
    with _lock(out):
        if not os.path.lexists(out):
            os.rename(tmp, out)
            return
        if not force:
            raise _appeared(out)
        if not is_index(out):
            raise _not_an_index(out, describe(out))
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``out``; a lock whose process is gone is broken."""
    lock = _lock_path(out)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = _read_owner(lock)
            if owner and _owner_gone(owner) is not None:
                lock.unlink(missing_ok=True)
                continue
            if time.monotonic() > deadline:
                raise IndexExistsError(
                    f"{str(lock)!r} is held by build process {owner or '?'}; wait for it, or "
                    "remove the file if no mixindex build is running"
                ) from None
            time.sleep(0.05)
    try:
        os.write(fd, process_token().encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


# ---- SIGTERM -------------------------------------------------------------------------------


_publishing = False


@contextmanager
def termination_guard() -> Iterator[None]:
    """Turn SIGTERM into :class:`BuildTerminated` for the duration (main thread only, and only
    where SIGTERM would otherwise end the process without cleanup).

    A SIGTERM that comes once :func:`publish` has begun is ignored: the move takes moments, and
    stopping halfway would leave cleanup to guess which folder holds what.
    """
    global _publishing
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal fired
        if fired or _publishing:
            return  # cleanup already runs, or the index is being published
        fired = True
        raise BuildTerminated(signum)

    _publishing = False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        # SIGTERM is ignored (nohup and the like) or the program handles it itself: leave it.
        yield
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _publishing = False
