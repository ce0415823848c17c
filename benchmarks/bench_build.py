"""Build speed and memory, against writing the same bytes with plain numpy in the same run.

    python benchmarks/bench_build.py                  # 10^8 entries, 10 and 1,000 sources
    python benchmarks/bench_build.py --entries 1e7    # a quicker run

Each build runs in a fresh child process so that its peak RSS is its own. The sources are
Parquet files of one constant column (tiny on disk: only their row counts matter to planning).
The spec is a linear schedule between two random weight vectors over the whole length.
Targets (issue #2): at least 40% of the numpy write speed, peak RSS under 1 GB, and the same
entries/s within 25% with 1,000 sources as with 10.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def write_spec(folder: Path, k: int, entries: int, block: int, order: str) -> Path:
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
            "num_examples": entries,
            "row_order": order,
        },
    }
    path = folder / f"spec{k}.json"
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--entries", type=float, default=1e8)
    ap.add_argument("--block-size", type=int, default=1000)
    ap.add_argument("--sources", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--row-order", default="shuffled", choices=["sequential", "shuffled"])
    ap.add_argument("--dir", default=None, help="Work folder (default: a temporary one).")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_build(*args.child)
        return
    entries = int(args.entries)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        results = {}
        for k in args.sources:
            spec = write_spec(folder, k, entries, args.block_size, args.row_order)
            out = folder / f"mix{k}.mixindex"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(spec), str(out)],
                check=False,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            if proc.returncode:
                sys.exit(f"the build of {k} sources failed:\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            # The numpy baseline writes the same number of bytes, right after, in this run.
            r["numpy_seconds"] = numpy_write(folder, r["bytes"])
            results[k] = r
            rate = entries / r["seconds"]
            np_rate = entries / r["numpy_seconds"]
            print(
                f"{k:>5} sources: {entries:,} entries in {r['seconds']:.2f} s = "
                f"{rate / 1e6:.1f} M entries/s; numpy writes the same {r['bytes'] / 1e6:.0f} MB "
                f"at {np_rate / 1e6:.1f} M entries/s; ratio {rate / np_rate:.2f} (target >= 0.40); "
                f"peak RSS {r['peak_rss'] / 2**20:.0f} MiB (target < 1024)"
            )
            shutil_rm(out)
        if len(results) >= 2:
            ks = sorted(results)
            base, many = results[ks[0]], results[ks[-1]]
            ratio = base["seconds"] / many["seconds"]
            print(f"entries/s with {ks[-1]} sources vs {ks[0]}: {ratio:.2f} (target >= 0.75)")


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
