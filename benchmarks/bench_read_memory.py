"""Reader memory against index length: open and read a 10^8-entry index and a 10^6 one.

    python benchmarks/bench_read_memory.py                 # 10^8 and 10^6 entries
    python benchmarks/bench_read_memory.py --entries 1e7   # quicker

Builds (in a temporary folder, or ``--keep DIR``) restart mixes of three small Arrow sources,
block size 10,000, then, in a fresh child process per index, prints the resident memory
(``VmRSS``, split into ``RssAnon``: the process's own memory, and ``RssFile``: pages of mapped
files) after importing, after ``mixindex.open``, after reading 10,000 positions spread over the
whole index in batches of 1,024 (after a first batch that pays one-time costs), and after
iterating 100,000 examples from the middle. The
index is memory-mapped, so opening reads no array, and the pages a read touches are file pages
the kernel may drop, not the process's own memory; ``close()`` unmaps them (the dataset maps
what it needs again on the next read).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import itertools, json, sys
import numpy as np

def rss():
    out = {}
    for line in open("/proc/self/status"):
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out

import mixindex, mixindex.read.dataset
report = {"imported": rss()}
ds = mixindex.open(sys.argv[1])
report["opened"] = rss()
rng = np.random.default_rng(0)
ds.__getitems__(np.arange(1024))  # one-time costs: Arrow's allocator, compute kernels
report["first batch read"] = rss()
positions = np.sort(rng.integers(0, len(ds), 10_000))
for lo in range(0, len(positions), 1024):
    ds.__getitems__(positions[lo : lo + 1024])
report["10k spread reads"] = rss()
for _ in itertools.islice(ds.iter(start=len(ds) // 2), 100_000):
    pass
report["100k iterated"] = rss()
ds.close()  # unmaps the index and the sources; reading again maps them back lazily
report["close()"] = rss()
assert ds[len(ds) - 1]["__source__"]
report["one more read"] = rss()
report["length"] = len(ds)
print(json.dumps(report))
"""


def build_index(root: Path, entries: int) -> Path:
    import pyarrow as pa

    from mixindex import DatasetConfig, MixStageConfig, PipelineConfig, build

    out = root / f"mix-{entries}.mixindex"
    if out.exists():
        return out
    datasets = []
    for k in range(3):
        path = root / f"s{k}.arrow"
        if not path.exists():
            rows = 1000 * (k + 1)
            t = pa.table({"text": [f"source {k} row {i} " + "x" * (i % 50) for i in range(rows)]})
            with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
                w.write_table(t, max_chunksize=500)
        datasets.append(DatasetConfig(name=f"s{k}", data_files=str(path), type="arrow"))
    config = PipelineConfig(
        datasets=datasets,
        mix=MixStageConfig(
            seed=1,
            weights={"s0": 0.5, "s1": 0.3, "s2": 0.2},
            block_size=10_000,
            num_examples=entries,
            row_order="shuffled",
        ),
        base_dir=root,
    )
    return build(config, out)


def measure(index: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(index)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=float, default=1e8, help="the large index (1e8)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the indexes here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_read_memory-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        for entries in (10**6, int(args.entries)):
            index = build_index(root, entries)
            size = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
            report = measure(index)
            print(f"index of {report.pop('length'):,} entries ({size / 2**20:,.0f} MiB on disk):")
            for stage, m in report.items():
                assert isinstance(m, dict)
                print(
                    f"  {stage:>18}: VmRSS {m['VmRSS']:7.1f} MiB  (RssAnon {m['RssAnon']:6.1f}, "
                    f"RssFile {m['RssFile']:6.1f})"
                )
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
