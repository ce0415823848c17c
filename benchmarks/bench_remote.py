"""Sources on S3 (a local moto server, as in the tests), against the same files on local disk.

    python benchmarks/bench_remote.py            # 200k-row Arrow source; 1,000 Parquet files
    python benchmarks/bench_remote.py --quick    # 50k rows; 200 Parquet files

Two figures, measured in this run (issue 12):

- batched random reads (``ds.__getitems__`` of 1024 random positions) of a mix whose Arrow IPC
  source is on S3, with a warm block cache, vs. the same mix of the same file on local disk
  (memory-mapped): target >= 0.5x;
- ``mixindex build`` over 1,000 Parquet objects on S3: the whole build, how long the sources
  took to open (listing + footers), and the footers' share, read concurrently; with, for scale,
  the same footers read one after another.

moto answers from this machine, in its own process, so there is no network latency; but it is
slow itself (tens of milliseconds of Python per request, and a range request copies the whole
object), so cold reads and footers measure moto more than mixindex. The concurrency figure is a
lower bound of what concurrent requests save against a real store, whose requests wait on the
network rather than on one CPU.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def start_s3() -> Any:
    """moto's server in its own process: in this one, it would share the client's GIL."""
    import socket
    import subprocess

    import boto3

    from tests.s3server import ENV

    os.environ.update(ENV)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["AWS_ENDPOINT_URL"] = endpoint = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            return server
        except Exception:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto's server did not start")


def arrow_table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(200, 501, rows)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    letters = rng.integers(97, 123, int(offsets[-1]), dtype=np.uint8)
    text = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(letters))
    return pa.table({"id": pa.array(np.arange(rows)), "text": text.cast(pa.string())})


def spec(data_files: str, n: int) -> Any:
    from mixindex.spec.config import PipelineConfig

    mix = {"seed": 1, "num_examples": n, "row_order": "shuffled", "block_size": 1000}
    return PipelineConfig.from_dict(
        {"datasets": [{"name": "a", "data_files": data_files}], "mix": mix}, base_dir=Path.cwd()
    )


def rounds(contenders: dict[str, Callable[[], int]], repeat: int) -> dict[str, float]:
    """Median rows/s of each contender over ``repeat`` alternating rounds."""
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            t = time.perf_counter()
            n = fn()
            rates[name].append(n / (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in rates.items()}


def bench_reads(root: Path, rows: int, repeat: int) -> bool:
    import fsspec

    import mixindex
    from mixindex.sources.blocks import block_cache

    table = arrow_table(rows, 0)
    local = root / "a.arrow"
    with pa.OSFile(str(local), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table, max_chunksize=1000)  # as datasets writes: 1000-row batches
    fsspec.filesystem("s3").put_file(str(local), "s3://bench/a.arrow")
    n = rows * 2
    here = mixindex.open(mixindex.build(spec(str(local), n), root / "local.mixindex"))
    there = mixindex.open(mixindex.build(spec("s3://bench/a.arrow", n), root / "s3.mixindex"))
    rng = np.random.default_rng(1)
    plans = [rng.integers(0, n, 1024).tolist() for _ in range(8)]
    cache = block_cache()
    cache.clear()
    t = time.perf_counter()
    cold = sum(len(there.__getitems__(p)) for p in plans[:2])
    cold_rate = cold / (time.perf_counter() - t)
    for lo in range(0, n, 8192):  # warm: every batch once
        there.__getitems__(list(range(lo, min(n, lo + 8192))))
    assert there.__getitems__(plans[0]) == here.__getitems__(plans[0])

    def read(ds: Any) -> Callable[[], int]:
        return lambda: sum(len(ds.__getitems__(p)) for p in plans)

    rates = rounds({"s3": read(there), "local": read(here)}, repeat)
    ratio = rates["s3"] / rates["local"]
    print(f"Arrow IPC source, {rows:,} rows in 1000-row batches, 1024 random positions a read:")
    print(f"  S3, cold block cache:  {cold_rate:12,.0f} rows/s (first reads, fetching)")
    print(f"  S3, warm block cache:  {rates['s3']:12,.0f} rows/s ({cache.nbytes / 2**20:.0f} MiB)")
    print(f"  local disk (mmap):     {rates['local']:12,.0f} rows/s")
    ok = ratio >= 0.5
    print(f"  warm S3 / local = {ratio:.2f} (target >= 0.5): {'met' if ok else 'NOT met'}")
    return ok


def bench_build(root: Path, files: int) -> None:
    import fsspec

    import mixindex
    import mixindex.sources.remote as remote
    import mixindex.sources.remote_parquet as rp

    fs = fsspec.filesystem("s3")
    t = time.perf_counter()
    payload = {}
    for k in range(files):
        buf = io.BytesIO()
        rows = 500 + k % 97
        pq.write_table(
            pa.table({"id": np.arange(rows), "x": np.random.default_rng(k).random(rows)}),
            buf,
            row_group_size=200,
        )
        payload[f"s3://bench/parquet/part-{k:05d}.parquet"] = buf.getvalue()
    fs.pipe(payload)
    print(f"\n{files:,} Parquet objects uploaded in {time.perf_counter() - t:.1f} s")

    timings: dict[str, float] = {"list": 0.0, "footers": 0.0}

    def timed(module: Any, name: str, key: str) -> None:
        inner = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                timings[key] += time.perf_counter() - t0

        setattr(module, name, wrapper)

    timed(remote, "list_files", "list")
    timed(rp, "read_footers", "footers")
    total_rows = sum(500 + k % 97 for k in range(files))
    t = time.perf_counter()
    mixindex.build(spec("s3://bench/parquet/*.parquet", total_rows), root / "many.mixindex")
    build = time.perf_counter() - t
    # A verifying build reopens nothing; the footers are read once, at open.
    opened = timings["list"] + timings["footers"]
    print(f"mixindex build over {files:,} Parquet objects on S3: {build:.2f} s in all")
    print(f"  listing (one prefix, paged):           {timings['list']:.2f} s")
    print(f"  footers (concurrent range reads):      {timings['footers']:.2f} s")
    print(
        f"  opening the sources = {opened / build:.0%} of the build; footers alone "
        f"{timings['footers'] / build:.0%}"
    )
    s3 = fsspec.filesystem("s3")
    infos = s3.glob("s3://bench/parquet/*.parquet", detail=True)
    t = time.perf_counter()
    for path, info in infos.items():
        size = info["size"]
        s3.cat_file(path, start=max(0, size - 65536), end=size)
    serial = time.perf_counter() - t
    print(
        f"  the same footers read one after another: {serial:.2f} s "
        f"({serial / timings['footers']:.1f}x the concurrent reads)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50k rows, 200 Parquet files")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per contender")
    args = parser.parse_args()
    server = start_s3()
    try:
        with tempfile.TemporaryDirectory(prefix="mixindex-bench-remote-") as tmp:
            root = Path(tmp)
            ok = bench_reads(root, 50_000 if args.quick else 200_000, args.repeat)
            bench_build(root, 200 if args.quick else 1000)
    finally:
        server.kill()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
