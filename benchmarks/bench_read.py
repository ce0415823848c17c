"""Read speed of a built mix, against raw pyarrow and Hugging Face ``datasets``, in one run.

    python benchmarks/bench_read.py            # 3 sources x 1M rows of 200-500 char strings
    python benchmarks/bench_read.py --quick    # 3 x 100k rows, fewer repeats: a smoke run

Every figure is measured in this run, over the same Arrow IPC files and the same weights
(0.5 / 0.3 / 0.2), and printed with the ratio it feeds and whether that meets its target
(issue #4):

- random reads: ``ds.__getitems__`` of 1024 random positions of a mix with shuffled rows, vs.
  raw pyarrow taking the same ``(source, row)`` list one ``RecordBatch.take`` per record batch
  touched and converting it to the same dicts (``__source__`` included): target >= 0.8;
- sequential iteration: ``for ex in ds`` vs. ``datasets.interleave_datasets`` over the same
  files, map-style batched (``.iter(batch_size=1024)``, columnar dicts): target >= 1.0, and as
  an ``IterableDataset`` per example: target >= 5.0;
- time to the first example after resuming at the last position vs. at position 0: <= 2.0.

Then the same rows as Parquet (``--no-parquet`` skips): with no target, random reads without and
with the Arrow cache (``--cache-dir``) and in-order iteration through the row-group LRU; and
iteration of a mix in ``grouped`` row order with no cache vs. the sequential one: target >= 0.5
(issue #12).

The data is written once into a temporary folder (``--keep DIR`` keeps it for later runs).
Rates are medians over rounds that alternate the contenders, so drift hits both alike.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.2}


# ---- data --------------------------------------------------------------------------------------


def make_source(path: Path, rows: int, batch_rows: int, seed: int) -> None:
    """An Arrow IPC stream (what ``datasets`` reads) of ``id`` and ``text`` (200-500 chars)."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    lengths = rng.integers(200, 501, rows)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    letters = rng.integers(97, 123, int(offsets[-1]), dtype=np.uint8)
    letters[rng.random(len(letters)) < 0.15] = 32  # spaces: words, roughly
    text = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(letters))
    table = pa.table({"id": pa.array(np.arange(rows)), "text": text.cast(pa.string())})
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table, max_chunksize=batch_rows)
    tmp.replace(path)


def build_mix(root: Path, files: dict[str, Path], row_order: str, n: int) -> Path:
    from mixindex import DatasetConfig, MixStageConfig, PipelineConfig, build

    out = root / f"mix-{row_order}.mixindex"
    if not out.exists():
        config = PipelineConfig(
            datasets=[
                DatasetConfig(name=k, data_files=str(p), type="arrow") for k, p in files.items()
            ],
            mix=MixStageConfig(
                seed=0,
                weights=WEIGHTS,
                block_size=1000,
                num_examples=n,
                row_order=row_order,  # type: ignore[arg-type]
            ),
            base_dir=root,
        )
        build(config, out)
    return out


# ---- contenders --------------------------------------------------------------------------------


class RawArrow:
    """The same (source, row) list read with plain pyarrow: one take per record batch."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.names = list(files)
        self.batches = []
        self.offsets = []
        for p in files.values():
            with pa.memory_map(str(p)) as mm:
                batches = list(pa.ipc.open_stream(mm))
            self.batches.append(batches)
            counts = [b.num_rows for b in batches]
            self.offsets.append(np.concatenate([[0], np.cumsum(counts)]))

    def read(self, source: np.ndarray, row: np.ndarray) -> list[dict[str, Any]]:
        out: list[Any] = [None] * len(source)
        for s in np.unique(source).tolist():
            where = np.flatnonzero(source == s)
            rows = row[where].astype(np.int64)
            piece = np.searchsorted(self.offsets[s], rows, side="right") - 1
            local = rows - self.offsets[s][piece]
            order = np.argsort(piece, kind="stable")
            cuts = np.flatnonzero(np.diff(piece[order])) + 1
            name = self.names[s]
            for group in np.split(order, cuts):
                batch = self.batches[s][int(piece[group[0]])]
                examples = batch.take(pa.array(local[group])).to_pylist()
                for i, ex in zip(where[group].tolist(), examples, strict=True):
                    ex["__source__"] = name
                    out[i] = ex
        return out


def rounds(contenders: dict[str, Callable[[], int]], repeat: int) -> dict[str, float]:
    """Median examples/s of each contender over ``repeat`` alternating rounds."""
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeat):
        for name, run in contenders.items():
            t0 = time.perf_counter()
            count = run()
            rates[name].append(count / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def report(label: str, ours: float, theirs: float, target: float, *, at_most: bool = False) -> bool:
    ratio = ours / theirs
    ok = ratio <= target if at_most else ratio >= target
    sign = "<=" if at_most else ">="
    print(f"  ratio {ratio:.2f} (target {sign} {target}): {'meets' if ok else 'MISSES'} — {label}")
    return ok


def fmt(rate: float) -> str:
    return f"{rate / 1e6:.3f} M/s" if rate >= 1e5 else f"{rate / 1e3:.1f} k/s"


# ---- measurements ------------------------------------------------------------------------------


def bench_random(index: Path, files: dict[str, Path], batches: int, repeat: int) -> bool:
    import mixindex

    ds = mixindex.open(index)
    raw = RawArrow(files)
    rng = np.random.default_rng(1)
    plan = [rng.integers(0, len(ds), 1024) for _ in range(batches)]
    lookups = [ds.lookup(p)[:2] for p in plan]
    # The two agree before they race.
    assert ds.__getitems__(plan[0]) == raw.read(*lookups[0])

    def ours() -> int:
        for p in plan:
            ds.__getitems__(p)
        return 1024 * batches

    def theirs() -> int:
        for source, row in lookups:
            raw.read(source, row)
        return 1024 * batches

    def arrow_only() -> int:
        for p in plan:
            ds.read_batch(p)
        return 1024 * batches

    ours(), theirs()  # warm the page cache
    r = rounds({"mixindex": ours, "raw": theirs, "read_batch": arrow_only}, repeat)
    print("random reads, 1024 positions per batch, rows shuffled, Arrow sources:")
    print(f"  mixindex __getitems__ {fmt(r['mixindex'])}; raw pyarrow take + dicts {fmt(r['raw'])}")
    print(f"  (mixindex read_batch -> pyarrow.Table {fmt(r['read_batch'])})")
    return report("batched random reads vs raw pyarrow", r["mixindex"], r["raw"], 0.8)


def bench_sequential(
    index: Path, files: dict[str, Path], count: int, iter_count: int, repeat: int
) -> list[bool]:
    import datasets

    import mixindex

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    ds = mixindex.open(index)
    parts = [datasets.Dataset.from_file(str(p)) for p in files.values()]
    probs = list(WEIGHTS.values())
    hf = datasets.interleave_datasets(
        parts, probabilities=probs, seed=0, stopping_strategy="all_exhausted"
    )
    hf_iterable = datasets.interleave_datasets(
        [d.to_iterable_dataset() for d in parts], probabilities=probs, seed=0
    )

    def ours() -> int:
        return sum(1 for _ in itertools.islice(ds, count))

    def hf_map() -> int:
        n = 0
        for batch in hf.iter(batch_size=1024):
            n += len(batch["text"])
            if n >= count:
                break
        return n

    def hf_iter() -> int:
        return sum(1 for _ in itertools.islice(hf_iterable, iter_count))

    ours(), hf_map()  # warm
    r = rounds({"mixindex": ours, "hf_map": hf_map}, repeat)
    it = rounds({"hf_iter": hf_iter}, 1)
    print(f"sequential iteration ({count:,} examples; HF IterableDataset {iter_count:,}):")
    print(
        f"  mixindex per example {fmt(r['mixindex'])}; HF map-style .iter(1024) "
        f"{fmt(r['hf_map'])}; HF IterableDataset per example {fmt(it['hf_iter'])}"
    )
    return [
        report("vs HF map-style batched", r["mixindex"], r["hf_map"], 1.0),
        report("vs HF IterableDataset", r["mixindex"], it["hf_iter"], 5.0),
    ]


def bench_resume(index: Path, repeat: int, hf_skip: int, files: dict[str, Path]) -> bool:
    import mixindex

    ds = mixindex.open(index)
    n = len(ds)
    first = {**iter(ds).state_dict(), "next_position": 0}
    last = {**iter(ds).state_dict(), "next_position": n - 1}

    def first_example(state: dict[str, Any]) -> float:
        fresh = mixindex.open(index)
        t0 = time.perf_counter()
        it = iter(fresh)
        it.load_state_dict(state)
        next(it)
        return time.perf_counter() - t0

    first_example(first), first_example(last)  # warm
    at0, atlast = [], []
    for _ in range(repeat):
        at0.append(first_example(first))
        atlast.append(first_example(last))
    t0, t1 = statistics.median(at0), statistics.median(atlast)
    print(f"time to the first example after resuming (mix of {n:,}):")
    print(f"  at position 0 {t0 * 1e3:.2f} ms; at position {n - 1:,} {t1 * 1e3:.2f} ms")
    if hf_skip:
        import datasets

        parts = [datasets.Dataset.from_file(str(p)).to_iterable_dataset() for p in files.values()]
        hf = datasets.interleave_datasets(parts, probabilities=list(WEIGHTS.values()), seed=0)
        t = time.perf_counter()
        next(iter(hf.skip(hf_skip)))
        print(f"  (HF IterableDataset .skip({hf_skip:,}) then one example: "
              f"{time.perf_counter() - t:.2f} s)")  # fmt: skip
    return report("first example at the end vs at 0", t1, t0, 2.0, at_most=True)


def bench_parquet(root: Path, files: dict[str, Path], n: int, repeat: int) -> bool:
    """The same rows as Parquet (row groups of 10,000): random reads with and without the Arrow
    cache and in-order iteration through the row-group LRU (no target); iteration of a mix in
    ``grouped`` row order without any cache vs. the sequential one (target >= 0.5)."""
    import pyarrow.parquet as pq

    import mixindex
    from mixindex import DatasetConfig, MixStageConfig, PipelineConfig, build

    pq_files = {}
    for name, path in files.items():
        pq_files[name] = path.with_suffix(".parquet")
        if not pq_files[name].exists():
            with pa.memory_map(str(path)) as mm:
                table = pa.ipc.open_stream(mm).read_all()
            pq.write_table(table, pq_files[name], row_group_size=10_000)
    indexes = {}
    for row_order in ("shuffled", "sequential", "grouped"):
        for cache in (None, root / "cache"):
            if row_order != "shuffled" and cache is not None:
                continue
            out = root / f"pq-{row_order}-{'cached' if cache else 'plain'}.mixindex"
            t = time.perf_counter()
            if not out.exists():
                datasets = [DatasetConfig(name=k, data_files=str(p)) for k, p in pq_files.items()]
                mix = MixStageConfig(
                    seed=0, weights=WEIGHTS, block_size=1000, num_examples=n,
                    row_order=row_order,  # type: ignore[arg-type]
                )  # fmt: skip
                config = PipelineConfig(datasets=datasets, mix=mix, base_dir=root)
                build(config, out, cache_dir=cache)
            indexes[(row_order, cache is not None)] = (out, time.perf_counter() - t)
    print("Parquet sources (row groups of 10,000; extra figures, no target):")
    rng = np.random.default_rng(2)
    for cached in (False, True):
        index, seconds = indexes[("shuffled", cached)]
        ds = mixindex.open(index)
        plan = [rng.integers(0, len(ds), 1024) for _ in range(3 if not cached else 50)]

        def read(ds: Any = ds, plan: list[np.ndarray] = plan) -> int:
            for p in plan:
                ds.__getitems__(p)
            return 1024 * len(plan)

        rate = rounds({"r": read}, 1 if not cached else repeat)["r"]
        what = f"Arrow cache (build incl. conversion {seconds:.1f} s)" if cached else "no cache"
        print(f"  random reads, rows shuffled, {what}: {fmt(rate)}")
    seq = mixindex.open(indexes[("sequential", False)][0])
    grouped = mixindex.open(indexes[("grouped", False)][0])
    count = min(len(seq), 300_000)
    rates = rounds(
        {
            "s": lambda: sum(1 for _ in itertools.islice(seq, count)),
            "g": lambda: sum(1 for _ in itertools.islice(grouped, count)),
        },
        repeat,
    )
    print(f"  iteration, rows in order, through the row-group LRU: {fmt(rates['s'])}")
    print(f"  iteration, rows shuffled group by group (grouped), no cache: {fmt(rates['g'])}")
    return report("grouped vs sequential Parquet", rates["g"], rates["s"], 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 x 100k rows, fewer repeats")
    parser.add_argument("--rows", type=int, default=None, help="rows per source (1M)")
    parser.add_argument(
        "--batch-rows", type=int, default=65536, help="rows per Arrow record batch (65536)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the data in this folder")
    parser.add_argument("--no-parquet", action="store_true", help="skip the Parquet figures")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeat = 3 if args.quick else 5
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_read-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        files = {}
        for i, name in enumerate(WEIGHTS):
            files[name] = root / f"{name}-{rows}-{args.batch_rows}.arrow"
            make_source(files[name], rows, args.batch_rows, seed=i)
        n = 3 * rows
        shuffled = build_mix(root, files, "shuffled", n)
        sequential = build_mix(root, files, "sequential", n)
        print(
            f"data: 3 sources x {rows:,} rows (200-500 chars, record batches of "
            f"{args.batch_rows:,}), mixes of {n:,}; ready in {time.perf_counter() - t:.1f} s"
        )
        results = [bench_random(shuffled, files, 50 if args.quick else 200, repeat)]
        count = min(n, 200_000 if args.quick else 1_000_000)
        iter_count = 20_000 if args.quick else 100_000
        print("[mix with rows in sequential order]")
        results += bench_sequential(sequential, files, count, iter_count, repeat)
        print("[mix with rows shuffled]")
        results += bench_sequential(shuffled, files, count, iter_count, repeat)
        results.append(bench_resume(shuffled, 20, 0 if args.quick else 100_000, files))
        if not args.no_parquet:
            results.append(bench_parquet(root, files, n, repeat))
        print(f"{sum(results)} of {len(results)} targets met")
        return 0 if all(results) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
