"""Build speed and memory, against writing the same bytes with plain numpy and against
Megatron-Core's greedy blending loop, all in the same run.

    python benchmarks/bench_build.py                  # 10^8 entries, 10 and 1,000 sources
    python benchmarks/bench_build.py --entries 1e7    # a quicker run

Each build runs in a fresh child process so that its peak RSS is its own. The sources are
Parquet files of one constant column (tiny on disk: only their row counts matter to planning).
The spec is a linear schedule between two random weight vectors over the whole length.

Per source count it prints: the whole build (plan, digest, write) vs. numpy writing the same
bytes; planning alone (every chunk's counts and positions, in memory, no writes, one thread)
vs. Megatron's greedy loop over the same number of entries. That loop (``build_blending_indices``
in Megatron-Core: for each sample, the dataset with the largest error ``weight * (i + 1) -
count``) is written here and compiled with numba like our kernels, so the comparison is of
algorithms, not of compilers; it gets the schedule's first weights (it has no schedule). And
the fixed I/O of the same index without any planning: its bytes written in files on a thread per
core and hashed twice (per file, and whole in order), as a build must: how near the build comes
to what this machine allows.
Targets (issue #9): the whole build >= 0.6x numpy with 10 sources; planning >= 2x Megatron's
loop with 10 sources and >= 20x with 1,000; peak RSS under 1 GB; entries/s with 1,000 sources
within 25% of 10.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_sources(folder: Path, k: int, rows: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"x": pa.array(np.zeros(rows, dtype=np.int8))})
    names = []
    for i in range(k):
        path = folder / f"s{i}.parquet"
        if not path.exists():
            pq.write_table(table, path, row_group_size=1 << 20)
        names.append(path.name)
    return names


def write_spec(
    folder: Path, k: int, entries: int, block: int, order: str, length: int | None = None
) -> Path:
    rng = np.random.default_rng(0)
    rows = max(1000, entries // (4 * k))
    files = make_sources(folder / f"data{k}-{rows}", k, rows)
    a, b = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
    spec = {
        "datasets": [
            {"name": f"s{i}", "data_files": f"data{k}-{rows}/{f}", "type": "parquet"}
            for i, f in enumerate(files)
        ],
        "mix": {
            "weight_schedule": [
                {"step": 0, "weights": {f"s{i}": float(a[i]) for i in range(k)}},
                {"step": entries, "weights": {f"s{i}": float(b[i]) for i in range(k)}},
            ],
            "weight_schedule_type": "linear",
            "block_size": block,
            "stop_strategy": "restart",
            "seed": 1,
            "num_examples": length or entries,
            "row_order": order,
        },
    }
    path = folder / f"spec{k}{'-' + str(length) if length else ''}.json"
    path.write_text(json.dumps(spec))
    return path


def child_build(spec: str, out: str) -> None:
    """Runs in the child: build, then report time and peak RSS as JSON on stdout."""
    import mixindex
    import mixindex.builder

    started = time.perf_counter()
    mixindex.build(spec, out, force=True, quiet=True)
    seconds = time.perf_counter() - started
    # The build's own peak plus its worker process's (if it used one): an upper bound on both.
    peak = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    ) * 1024
    nbytes = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "bytes": nbytes}))


def warm_planner(spec: str) -> Any:
    """The spec's planner, its compiled kernels loaded (compiled on a fresh install)."""
    from mixindex.builder import plan_inputs
    from mixindex.plan.planner import Planner
    from mixindex.sources import open_source
    from mixindex.sources.base import row_groups
    from mixindex.spec.config import load_spec

    config = load_spec(spec)
    sources = [open_source(d, config.base_dir) for d in config.datasets]
    lengths = [len(s) for s in sources]
    inputs = plan_inputs(config, lengths, [row_groups(s) for s in sources])
    # Warm up: load the compiled kernels (compiling them on a fresh install) outside the timing.
    warm = Planner(inputs, 4)
    for task in itertools.islice(warm.tasks(), 2):
        warm.materialize(task)
    return Planner(inputs)


def child_plan(spec: str) -> None:
    """Runs in the child: plan the whole mix in memory on one thread (no writes)."""
    planner = warm_planner(spec)
    started = time.perf_counter()
    entries = 0
    for task in planner.tasks():
        entries += len(planner.materialize(task).source)
    print(json.dumps({"seconds": time.perf_counter() - started, "entries": entries}))


def child_plan_parallel(spec: str) -> None:
    """Runs in the child: plan the whole mix in memory as a build does (counts on this thread,
    each chunk's positions on a thread per core, taken back in order), no writes."""
    from concurrent.futures import ThreadPoolExecutor

    from mixindex.workers import default_workers

    planner = warm_planner(spec)
    started = time.perf_counter()
    entries = 0
    workers = default_workers()
    with ThreadPoolExecutor(workers) as pool:
        pending: list[Any] = []
        for task in planner.tasks():
            pending.append(pool.submit(planner.materialize, task))
            while len(pending) > workers + 2:
                entries += len(pending.pop(0).result().source)
        for future in pending:
            entries += len(future.result().source)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "entries": entries, "workers": workers}))


def megatron_loop() -> Any:
    """Megatron-Core's greedy blending loop, compiled with numba (nogil) like ours."""
    from numba import njit

    @njit(nogil=True)  # type: ignore[misc]
    def blend(weights: np.ndarray, size: int, index: np.ndarray, sample: np.ndarray) -> None:
        k = weights.shape[0]
        current = np.zeros(k, dtype=np.int64)
        for i in range(size):
            best, best_error = 0, weights[0] * (i + 1) - current[0]
            for d in range(1, k):
                error = weights[d] * (i + 1) - current[d]
                if error > best_error:
                    best, best_error = d, error
            index[i] = best
            sample[i] = current[best]
            current[best] += 1

    return blend


def child_megatron(spec: str, entries: int) -> None:
    """Runs in the child: Megatron's loop over ``entries`` samples, in memory; the seconds."""
    doc = json.loads(Path(spec).read_text())
    first = doc["mix"]["weight_schedule"][0]["weights"]
    weights = np.array(list(first.values()), dtype=np.float64)
    weights /= weights.sum()
    blend = megatron_loop()
    k = len(weights)
    dtype = np.uint8 if k <= 256 else np.uint16
    blend(weights, 1000, np.empty(1000, dtype=dtype), np.empty(1000, dtype=np.int64))  # compile
    index, sample = np.empty(entries, dtype=dtype), np.empty(entries, dtype=np.int64)
    started = time.perf_counter()
    blend(weights, entries, index, sample)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def in_child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if proc.returncode:
        sys.exit(f"{args[0]} {args[1]} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def numpy_write(folder: Path, nbytes: int) -> float:
    """Seconds to write ``nbytes`` with numpy in 8 MiB pieces (the same order of I/O as a build)."""
    piece = np.ones(8 << 20, dtype=np.uint8)
    path = folder / "numpy.bin"
    started = time.perf_counter()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            n = min(left, piece.size)
            piece[:n].tofile(f)
            left -= n
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def write_and_hash(folder: Path, nbytes: int) -> float:
    """Seconds to write ``nbytes`` in 8 MiB files on a thread per core, hashing each file's bytes
    and, in order on this thread, the whole (the two sha256 passes a build makes): the fixed I/O
    of an index of that size, with none of the planning."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from mixindex.workers import default_workers

    piece = np.ones(8 << 20, dtype=np.uint8)
    sizes = [min(piece.size, nbytes - at) for at in range(0, nbytes, piece.size)]

    def one(i: int) -> bytes:
        data = piece[: sizes[i]]
        data.tofile(folder / f"piece{i}.bin")
        return hashlib.sha256(data.data).digest()

    whole = hashlib.sha256()
    started = time.perf_counter()
    with ThreadPoolExecutor(default_workers()) as pool:
        for i, _ in enumerate(pool.map(one, range(len(sizes)))):
            whole.update(piece[: sizes[i]].data)
    seconds = time.perf_counter() - started
    for i in range(len(sizes)):
        (folder / f"piece{i}.bin").unlink()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--entries", type=float, default=1e8)
    ap.add_argument("--block-size", type=int, default=1000)
    ap.add_argument("--sources", type=int, nargs="+", default=[10, 1000])
    ap.add_argument(
        "--row-order", default="shuffled", choices=["sequential", "shuffled", "grouped"]
    )
    ap.add_argument("--dir", default=None, help="Work folder (default: a temporary one).")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-plan", help=argparse.SUPPRESS)
    ap.add_argument("--child-plan-parallel", help=argparse.SUPPRESS)
    ap.add_argument("--child-megatron", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_build(*args.child)
        return
    if args.child_plan:
        child_plan(args.child_plan)
        return
    if args.child_plan_parallel:
        child_plan_parallel(args.child_plan_parallel)
        return
    if args.child_megatron:
        child_megatron(args.child_megatron[0], int(args.child_megatron[1]))
        return
    entries = int(args.entries)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        results = {}
        for k in args.sources:
            spec = write_spec(folder, k, entries, args.block_size, args.row_order)
            out = folder / f"mix{k}.mixindex"
            r = in_child("--child", str(spec), str(out))
            # The numpy baseline writes the same number of bytes, right after, in this run.
            r["numpy_seconds"] = numpy_write(folder, r["bytes"])
            r["io_seconds"] = write_and_hash(folder, r["bytes"])
            shutil_rm(out)
            # Start-up (imports, loading the compiled kernels): a build of the first chunk only.
            r["startup_entries"] = one_chunk(args.block_size)
            one = write_spec(
                folder, k, entries, args.block_size, args.row_order, r["startup_entries"]
            )
            r["startup_seconds"] = in_child("--child", str(one), str(out))["seconds"]
            shutil_rm(out)
            r["plan_seconds"] = in_child("--child-plan", str(spec))["seconds"]
            r["plan_all_seconds"] = in_child("--child-plan-parallel", str(spec))["seconds"]
            r["megatron_seconds"] = in_child("--child-megatron", str(spec), str(entries))["seconds"]
            results[k] = r
            report(k, entries, r)
        if len(results) >= 2:
            ks = sorted(results)
            base, many = results[ks[0]], results[ks[-1]]
            ratio = base["seconds"] / many["seconds"]
            # The same ratio for numpy writing each index's bytes: the bigger index has a
            # (blocks x sources) table of counts and one of cursors, which numpy writes too.
            disk = base["numpy_seconds"] / many["numpy_seconds"]
            print(
                f"entries/s with {ks[-1]} sources vs {ks[0]}: {ratio:.2f} (target >= 0.75); "
                f"numpy writing the same bytes: {disk:.2f}"
            )


def one_chunk(block_size: int) -> int:
    """Positions of one chunk with the default chunking."""
    from mixindex.plan.planner import CHUNK_POSITIONS

    return max(1, CHUNK_POSITIONS // block_size) * block_size


def report(k: int, entries: int, r: dict[str, Any]) -> None:
    rate = entries / r["seconds"]
    np_rate = entries / r["numpy_seconds"]
    # Past start-up: the entries after the first chunk over the seconds after its build.
    steady = (entries - r["startup_entries"]) / max(r["seconds"] - r["startup_seconds"], 1e-9)
    plan_rate = entries / r["plan_seconds"]
    plan_all = entries / r["plan_all_seconds"]
    meg_rate = entries / r["megatron_seconds"]
    io_rate = entries / r["io_seconds"]
    want = 2 if k <= 10 else 20
    print(
        f"{k:>5} sources: {entries:,} entries in {r['seconds']:.2f} s = "
        f"{rate / 1e6:.1f} M entries/s; numpy writes the same {r['bytes'] / 1e6:.0f} MB "
        f"at {np_rate / 1e6:.1f} M entries/s; ratio {rate / np_rate:.2f} (target >= 0.6); "
        f"peak RSS {r['peak_rss'] / 2**20:.0f} MiB (target < 1024)\n"
        f"       start-up (a one-chunk build) {r['startup_seconds']:.2f} s; after it "
        f"{steady / 1e6:.1f} M entries/s, ratio {steady / np_rate:.2f}\n"
        f"       planning alone, one thread {plan_rate / 1e6:.1f} M entries/s, as the build "
        f"plans (chunks on every core) {plan_all / 1e6:.1f} M entries/s; Megatron's loop "
        f"{meg_rate / 1e6:.1f} M entries/s; ratios {plan_rate / meg_rate:.2f} and "
        f"{plan_all / meg_rate:.2f} (target >= {want})\n"
        f"       writing the same bytes and hashing them twice on every core (no planning) "
        f"{io_rate / 1e6:.1f} M entries/s: the build runs at {rate / io_rate:.2f} of it, "
        f"{steady / io_rate:.2f} after start-up"
    )


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
