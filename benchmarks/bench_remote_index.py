"""An index in object storage: first example after resuming at the last position vs. at
position 0, against a local S3 server (moto), in one run.

    python benchmarks/bench_remote_index.py                  # a 10^8-position index
    python benchmarks/bench_remote_index.py --entries 1e7    # smaller, faster

The index is built and uploaded once (``build(spec, "s3://...")``); then each round opens it
with an empty local cache (a reader on a fresh host) and times, from a checkpoint's
``load_state_dict`` to the first example, a reader resuming at the last position and one
starting at position 0 (the rounds alternate the two). The target (issue 12): resuming at the
last position costs at most 3x position 0. Also printed: the build and upload times, the time to
open (pointer and metadata), and the first example once the chunk is in the local cache.
Needs ``moto[server]`` and ``s3fs`` (``pip install 'mixindex[s3,test]'``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROWS = 100_000
WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.2}


def start_server() -> tuple[Any, str]:
    """moto's S3 server on a free loopback port, with the environment a user's would have."""
    from moto.server import ThreadedMotoServer

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return server, endpoint


def make_sources(folder: Path) -> dict[str, Path]:
    files = {}
    for i, name in enumerate(WEIGHTS):
        path = folder / f"{name}.arrow"
        rng = np.random.default_rng(i)
        text = [
            f"{name} row {j} " + "x" * int(n) for j, n in enumerate(rng.integers(50, 300, ROWS))
        ]
        table = pa.table({"id": np.arange(ROWS), "text": text})
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table, max_chunksize=10_000)
        files[name] = path
    return files


def build_remote(files: dict[str, Path], url: str, n: int) -> tuple[float, float]:
    """Build the mix locally and to ``url``; returns (local build seconds, remote build
    seconds: the same build plus the upload)."""
    from mixindex import DatasetConfig, MixStageConfig, PipelineConfig, build

    config = PipelineConfig(
        datasets=[DatasetConfig(name=k, data_files=str(p), type="arrow") for k, p in files.items()],
        mix=MixStageConfig(
            seed=0, weights=WEIGHTS, block_size=1000, num_examples=n, row_order="shuffled"
        ),
    )
    local = Path(tempfile.mkdtemp(prefix="bench-remote-")) / "mix.mixindex"
    t = time.perf_counter()
    build(config, local)
    t_local = time.perf_counter() - t
    shutil.rmtree(local.parent)
    t = time.perf_counter()
    build(config, url)
    return t_local, time.perf_counter() - t


def first_example(url: str, position: int, cache: Path | None) -> tuple[float, float, int]:
    """(seconds to open, seconds from load_state_dict to the first example, objects fetched),
    with the local cache at ``cache`` (a fresh folder: nothing cached)."""
    import mixindex

    if cache is not None:
        os.environ["MIXINDEX_CACHE_DIR"] = str(cache)
    t = time.perf_counter()
    ds = mixindex.open(url)
    t_open = time.perf_counter() - t
    state = ds.iter(position).state_dict()  # a checkpoint: nothing read yet
    before = len(ds.index.folder.fetched)  # type: ignore[union-attr]
    t = time.perf_counter()
    it = iter(ds)
    it.load_state_dict(state)
    next(it)
    t_first = time.perf_counter() - t
    fetched = len(ds.index.folder.fetched) - before  # type: ignore[union-attr]
    ds.close()
    return t_open, t_first, fetched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=float, default=1e8, help="positions in the index")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    n = int(args.entries)
    root = Path(tempfile.mkdtemp(prefix="bench-remote-index-"))
    server, endpoint = start_server()
    try:
        files = make_sources(root)
        url = "s3://bench/mix.mixindex"
        t_local, t_remote = build_remote(files, url, n)
        print(f"index: {n:,} positions at {url} (moto at {endpoint})")
        print(f"build: {t_local:.1f} s to a local folder, {t_remote:.1f} s to S3 (with upload)")
        times: dict[str, list[float]] = {"0": [], "last": [], "open": [], "warm": []}
        fetched = {}
        for r in range(args.rounds):
            order = [("0", 0), ("last", n - 1)]
            for label, position in order if r % 2 == 0 else order[::-1]:
                cache = root / f"cache-{r}-{label}"
                t_open, t_first, k = first_example(url, position, cache)
                times[label].append(t_first)
                times["open"].append(t_open)
                fetched[label] = k
            times["warm"].append(first_example(url, n - 1, None)[1])  # the same host again
            shutil.rmtree(root / f"cache-{r}-0"), shutil.rmtree(root / f"cache-{r}-last")
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["last"] / med["0"]
        print(f"open (pointer + metadata), cold cache: {med['open'] * 1e3:.1f} ms")
        print(f"first example at position 0, cold cache: {med['0'] * 1e3:.1f} ms "
              f"({fetched['0']} objects fetched)")  # fmt: skip
        print(f"first example resuming at position {n - 1:,}, cold cache: {med['last'] * 1e3:.1f} "
              f"ms ({fetched['last']} objects fetched)")  # fmt: skip
        print(
            f"first example resuming at the last position, warm cache: {med['warm'] * 1e3:.1f} ms"
        )
        verdict = "meets" if ratio <= 3.0 else "MISSES"
        print(f"ratio last / position 0: {ratio:.2f} (target <= 3.0: {verdict})")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
