"""The load stage: batches of stacked numpy arrays, prefetched in the background.

A batch is a dict of arrays, one row per example: packed or padded tokens become a 2-D integer
array, unpadded ones an object array of 1-D arrays, strings (``__source__``) a string array.
``jax.device_put`` takes these as they are; :meth:`Loader.torch` wraps the loader for a
PyTorch ``DataLoader``.

Prefetching runs in one background thread (so batches keep their order) that hands over
batches or the error it met: an error in a worker is raised in the training loop, and a slow
source is waited for, never taken for the end of the data (EasyDeL's loader stops silently
after 60 s without a batch).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np

from mixindex.pipeline.stages import LoadStageConfig
from mixindex.pipeline.stream import Stream

__all__ = ["Loader", "batches", "collate"]

# How often a waiting consumer checks that the prefetch thread is still alive.
_POLL_S = 1.0


def _column(values: list[Any]) -> np.ndarray:
    first = values[0]
    if isinstance(first, str):
        return np.array(values, dtype=str)
    if isinstance(first, (list, tuple, np.ndarray)):
        arrays = [np.asarray(v) for v in values]
        # Arrays of one shape (packed, padded) stack; lists are ragged token lists, kept as an
        # object array even when a batch happens to hold equal lengths, so the shape of a
        # field never depends on the data.
        if isinstance(first, np.ndarray) and len({a.shape for a in arrays}) == 1:
            return np.stack(arrays)
        out = np.empty(len(arrays), dtype=object)
        out[:] = arrays
        return out
    try:
        return np.array(values)
    except ValueError:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out


def collate(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One array per field; a field some examples lack is None for them (object array)."""
    keys: dict[str, None] = {}
    for ex in examples:
        keys.update(dict.fromkeys(ex))
    batch = {}
    for key in keys:
        values = [ex.get(key) for ex in examples]
        if any(v is None for v in values):
            col = np.empty(len(values), dtype=object)
            col[:] = values
            batch[key] = col
        else:
            batch[key] = _column(values)
    return batch


def batches(
    stream: Stream, state: Any, batch_size: int, drop_last: bool
) -> Iterator[tuple[dict[str, np.ndarray], Any]]:
    """``(batch, state after it)`` pairs; a trailing partial batch unless ``drop_last``."""
    items = stream.iterate(state)
    while chunk := list(islice(items, batch_size)):
        if len(chunk) < batch_size and drop_last:
            return
        yield collate([item for item, _ in chunk]), chunk[-1][1]


class _Prefetch(Iterator[tuple[Any, Any]]):
    """Runs ``source`` in a thread, ``depth`` items ahead; re-raises what the thread raised."""

    _END = object()

    def __init__(self, source: Iterator[tuple[Any, Any]], depth: int) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="mixindex-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator[tuple[Any, Any]]) -> None:
        try:
            for item in source:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(("error", exc))

    def __next__(self) -> tuple[Any, Any]:
        if self._done:
            raise StopIteration
        while True:
            try:
                kind, value = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True
                    raise RuntimeError("mixindex prefetch thread ended without a result") from None
        if kind == "item":
            return value  # type: ignore[no-any-return]
        self._done = True
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        self._done = True

    def __del__(self) -> None:
        self._stop.set()


class Loader:
    """An iterable of batches; each iteration starts where the pipeline's state says, and every
    batch handed out moves that state (``pipeline.state_dict()`` resumes after it)."""

    def __init__(
        self,
        make: Callable[[Any], Iterator[tuple[Any, Any]]],
        config: LoadStageConfig,
        get_state: Callable[[], Any],
        set_state: Callable[[Any], None],
    ) -> None:
        self._make = make
        self.config = config
        self._get_state = get_state
        self._set_state = set_state

    def __iter__(self) -> Iterator[Any]:
        source = self._make(self._get_state())
        if self.config.prefetch_enabled:
            source = _Prefetch(source, self.config.prefetch_buffer_size)
        try:
            for batch, state in source:
                self._set_state(state)
                yield batch
        finally:
            if isinstance(source, _Prefetch):
                source.close()

    def torch(self) -> Any:
        """A ``torch.utils.data.IterableDataset`` of these batches as tensors; give it to
        ``DataLoader(..., batch_size=None)`` (batching is done here)."""
        import torch
        from torch.utils.data import IterableDataset

        loader = self

        class Batches(IterableDataset):  # type: ignore[type-arg]
            def __iter__(self) -> Iterator[dict[str, Any]]:
                for batch in loader:
                    yield {
                        k: torch.from_numpy(v) if v.dtype.kind in "iufb" else v.tolist()
                        for k, v in batch.items()
                    }

        return Batches()
