"""The dataset in real loaders: PyTorch (DataLoader, torchdata's StatefulDataLoader), Grain and
Hugging Face ``datasets``; plus a light import, pickling and fork safety.

The loader libraries are test extras (torch, torchdata, grain); a machine without one reports a
skip that names it.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DEFAULT_MIX, Shared

import mixindex
from mixindex.errors import StateError
from mixindex.read.dataset import MixedDataset

N = DEFAULT_MIX["num_examples"]

pytestmark = [
    # torchdata 0.11's StatefulDataLoader calls torch.set_vital, which torch 2.13 deprecates.
    pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning"),
]


# ---- process-level facts ---------------------------------------------------------------------


# What a reader must not import: the build-side libraries, numba (the planner's kernels), and
# every package of an extra (pyproject.toml), so `import mixindex` and `mixindex.open` cost the
# same next to any training stack, with or without the extras installed.
HEAVY = (
    "datasets", "duckdb", "zarr", "numba", "llvmlite",
    "torch", "torchdata", "grain", "matplotlib", "s3fs", "gcsfs", "dask", "distributed",
    "transformers", "tokenizers", "moto",
)  # fmt: skip
_FIND_HEAVY = f"print(sorted({{m.partition('.')[0] for m in sys.modules}} & set({HEAVY!r})))"


def _run_fresh(code: str, *args: str) -> str:
    """Runs code in a new interpreter on this checkout's package; returns what it printed."""
    env = {**os.environ, "PYTHONPATH": str(Path(mixindex.__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


def test_importing_the_reader_stays_light() -> None:
    assert _run_fresh("import mixindex, mixindex.read.dataset, sys; " + _FIND_HEAVY) == "[]"


def test_opening_reads_no_heavy_library(shared: Shared) -> None:
    code = (
        "import mixindex, sys; ds = mixindex.open(sys.argv[1]); ds[0]; list(ds.iter(900)); "
        "ds.shard(0, 2, global_batch_size=8)[3]; ds.read_batch([1, 2]); " + _FIND_HEAVY
    )
    # The docs source is a save_to_disk folder, read as Arrow files: datasets is not needed.
    assert _run_fresh(code, str(shared.index)) == "[]"


def test_the_heavy_check_sees_an_import() -> None:
    # The check above would pass vacuously if its probe could not see a module being imported.
    assert _run_fresh("import sys, numba; " + _FIND_HEAVY) == "['llvmlite', 'numba']"


def test_pickle_carries_paths_not_arrays(shared: Shared) -> None:
    ds = mixindex.open(shared.index).shard(1, 2, global_batch_size=10)
    first = ds[0:50]  # maps chunks and fills the Parquet row-group cache
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    back = pickle.loads(blob)
    assert back.digest == ds.digest and len(back) == len(ds)
    assert back[0:50] == first
    assert back.sharding == ds.sharding


def test_fork_reopens_sources(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    want = ds[0:N]  # the parent has its maps and Parquet handles open
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            ok = ds[0:N] == want and ds.sources[0]._pid == os.getpid()  # type: ignore[attr-defined]
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"


# ---- PyTorch -----------------------------------------------------------------------------------


def torch_or_skip() -> Any:
    return pytest.importorskip(
        "torch", reason="torch is not installed (pip install 'mixindex[test]' brings it)"
    )


def batches(loader: Any) -> list[Any]:
    return [b for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_dataloader_yields_the_sequence(shared: Shared, workers: int) -> None:
    torch_or_skip()
    from torch.utils.data import DataLoader

    ds = mixindex.open(shared.index)
    ds[0:20]  # open handles before the fork: the workers must reopen theirs
    loader = DataLoader(ds, batch_size=16, num_workers=workers, collate_fn=list)
    got = [ex for b in loader for ex in b]
    assert got == list(ds)
    # Default collation works when every source has the projected column.
    text = mixindex.open(shared.index, columns=["text"])
    loader = DataLoader(text, batch_size=8, num_workers=workers)
    first = next(iter(loader))
    assert first == {
        "text": [e["text"] for e in got[:8]],
        "__source__": [e["__source__"] for e in got[:8]],
    }


def test_torch_shards_do_not_depend_on_workers(shared: Shared) -> None:
    torch_or_skip()
    from torch.utils.data import DataLoader

    ds = mixindex.open(shared.index)
    for rank in range(2):
        mine = ds.shard(rank, 2, global_batch_size=16)
        runs = []
        for workers in (0, 1, 2):
            loader = DataLoader(mine, batch_size=8, num_workers=workers, collate_fn=list)
            runs.append([ex for b in loader for ex in b])
        assert runs[0] == runs[1] == runs[2] == list(mine)
        assert len(runs[0]) == N // 16 * 8


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_round_trip(shared: Shared, workers: int) -> None:
    torch_or_skip()
    sdl = pytest.importorskip(
        "torchdata.stateful_dataloader",
        reason="torchdata is not installed (pip install 'mixindex[test]' brings it)",
    )
    ds = mixindex.open(shared.index).shard(0, 2, global_batch_size=10)
    loader = sdl.StatefulDataLoader(ds, batch_size=5, num_workers=workers, collate_fn=list)
    it = iter(loader)
    head = [next(it) for _ in range(7)]
    state = loader.state_dict()
    rest = list(it)
    assert [ex for b in head + rest for ex in b] == list(ds)

    again = sdl.StatefulDataLoader(
        mixindex.open(shared.index).shard(0, 2, global_batch_size=10),
        batch_size=5,
        num_workers=workers,
        collate_fn=list,
    )
    again.load_state_dict(state)
    assert list(again) == rest


def test_stateful_dataloader_refuses_another_index(shared: Shared, other_index: Path) -> None:
    torch_or_skip()
    sdl = pytest.importorskip(
        "torchdata.stateful_dataloader",
        reason="torchdata is not installed (pip install 'mixindex[test]' brings it)",
    )
    loader = sdl.StatefulDataLoader(mixindex.open(shared.index), batch_size=4, collate_fn=list)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    other = sdl.StatefulDataLoader(mixindex.open(other_index), batch_size=4, collate_fn=list)
    other.load_state_dict(state)
    with pytest.raises(StateError, match="another index"):
        next(iter(other))


# ---- Grain -------------------------------------------------------------------------------------


def grain_or_skip() -> Any:
    return pytest.importorskip(
        "grain", reason="grain is not installed (pip install 'mixindex[test]' brings it)"
    )


def test_grain_map_dataset(shared: Shared) -> None:
    grain = grain_or_skip()
    ds = mixindex.open(shared.index)
    everything = list(ds)
    src = grain.MapDataset.source(ds)
    assert len(src) == N
    assert src[17] == everything[17]
    # Batches go through the batched read (_getitems), in order.
    got = list(src.batch(64, batch_fn=list))
    assert [ex for b in got for ex in b] == everything
    assert len(got) == -(-N // 64)


def test_grain_iterator_checkpoint_round_trip(shared: Shared) -> None:
    grain = grain_or_skip()
    ds = mixindex.open(shared.index).shard(1, 2, global_batch_size=10)
    everything = list(ds)
    it = iter(grain.MapDataset.source(ds).to_iter_dataset())
    head = [next(it) for _ in range(123)]
    state = it.get_state()
    assert state == {"next_index": 123}
    rest = list(it)
    assert head + rest == everything
    again = iter(
        grain.MapDataset.source(
            mixindex.open(shared.index).shard(1, 2, global_batch_size=10)
        ).to_iter_dataset()
    )
    again.set_state(state)
    assert list(again) == rest


def test_grain_dataloader_checkpoint(shared: Shared, other_index: Path) -> None:
    grain = grain_or_skip()

    def loader(ds: MixedDataset) -> Any:
        sampler = grain.samplers.IndexSampler(
            num_records=len(ds), shard_options=grain.sharding.NoSharding(), num_epochs=1
        )
        return grain.DataLoader(data_source=ds, sampler=sampler, worker_count=0)

    ds = mixindex.open(shared.index)
    it = iter(loader(ds))
    head = [next(it) for _ in range(40)]
    state = it.get_state()
    rest = list(it)
    assert head + rest == list(ds)
    again = iter(loader(mixindex.open(shared.index)))
    again.set_state(state)
    assert list(again) == rest
    # Grain checks repr(data_source), which names the index by digest: another index is refused.
    other = iter(loader(mixindex.open(other_index)))
    with pytest.raises(ValueError, match="sha256"):
        other.set_state(state)


# ---- Hugging Face datasets ---------------------------------------------------------------------


def test_hf_iterable_dataset_resumes(shared: Shared, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    ds = mixindex.open(shared.index)
    everything = list(ds)
    hf = ds.to_iterable_dataset()
    assert isinstance(hf, datasets.IterableDataset)
    assert list(hf) == everything
    for k in (0, 1, 500, N - 1, N):
        # A fresh one each time: HF's state_dict() follows the latest iteration that started.
        hf = mixindex.open(shared.index).to_iterable_dataset()
        it = iter(hf)
        for _ in range(k):
            next(it)
        state = hf.state_dict()
        fresh = mixindex.open(shared.index).to_iterable_dataset()
        fresh.load_state_dict(state)
        assert list(fresh) == everything[k:], k

    # Resuming reads from the saved place: nothing before it is read or replayed.
    reads: list[np.ndarray] = []
    real = MixedDataset.__getitems__

    def spy(self: MixedDataset, positions: Any) -> list[dict[str, Any]]:
        reads.append(np.asarray(positions))
        return real(self, positions)

    it = iter(hf)
    for _ in range(900):
        next(it)
    state = hf.state_dict()
    monkeypatch.setattr(MixedDataset, "__getitems__", spy)
    fresh = mixindex.open(shared.index).to_iterable_dataset()
    fresh.load_state_dict(state)
    assert next(iter(fresh)) == everything[900]
    assert len(reads) == 1 and reads[0][0] == 900


def test_hf_shards_and_epochs(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    mine = ds.shard(1, 2, global_batch_size=10)
    hf = mine.to_iterable_dataset(num_shards=4)
    assert hf.num_shards == 4
    assert list(hf) == list(mine)
    # A new epoch does not reshuffle a planned mix.
    hf.set_epoch(3)
    assert list(hf) == list(mine)
    it = iter(hf)
    head = list(itertools.islice(it, 300))  # into the third run
    state = hf.state_dict()
    fresh = mixindex.open(shared.index).shard(1, 2, global_batch_size=10).to_iterable_dataset(4)
    fresh.set_epoch(3)
    fresh.load_state_dict(state)
    assert head + list(fresh) == list(mine)


def test_hf_refuses_another_index_or_sharding(shared: Shared, other_index: Path) -> None:
    ds = mixindex.open(shared.index)
    hf = ds.to_iterable_dataset()
    next(iter(hf))
    state = hf.state_dict()
    other = mixindex.open(other_index).to_iterable_dataset()
    other.load_state_dict(state)
    with pytest.raises(StateError) as excinfo:
        next(iter(other))
    assert ds.digest in str(excinfo.value)
    sharded = ds.shard(0, 2, global_batch_size=10).to_iterable_dataset()
    sharded.load_state_dict(state)
    with pytest.raises(StateError, match="another sharding"):
        next(iter(sharded))


def test_hf_dataloader_workers(shared: Shared) -> None:
    torch_or_skip()
    from torch.utils.data import DataLoader

    ds = mixindex.open(shared.index)
    hf = ds.to_iterable_dataset(num_shards=2)
    got = [ex for b in DataLoader(hf, batch_size=None, num_workers=2) for ex in [b]]
    # Each worker reads whole runs; together they read every position once.
    assert sorted(map(repr, got)) == sorted(map(repr, list(ds)))
