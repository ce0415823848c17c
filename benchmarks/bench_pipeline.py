"""Pipeline throughput in tokens/s, against tokenizing and packing the same examples directly.

    python benchmarks/bench_pipeline.py            # 2 sources x 100k examples of 20-200 words
    python benchmarks/bench_pipeline.py --quick    # 2 x 10k examples: a smoke run

Both sides run in this process over the same examples, with the same locally trained BPE
tokenizer (no hub):

- direct: read the Parquet files with pyarrow, call the ``transformers`` fast tokenizer on
  batches of 1000 texts, and pack greedily with numpy (concatenate with EOS, cut into rows of
  ``seq_length``), yielding batches of 8 rows;
- pipeline: ``Pipeline.source().tokenize().mix().pack().load().build()`` over the same files
  (a ``first_exhausted`` mix of the two, greedy packing without shuffling, batches of 8), with
  prefetching on and off.

Printed: tokens/s of each and the ratio pipeline / direct (the pipeline's extra work is the mix
and its per-example bookkeeping; the tokenizer call dominates both). Rates are medians of
``--rounds`` alternating rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEQ = 1024
BATCH = 8


def make_data(root: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    words = [f"word{i}" for i in range(5000)]
    files = []
    for name in ("a", "b"):
        lengths = rng.integers(20, 200, size=n)
        picks = rng.integers(0, len(words), size=int(lengths.sum()))
        texts, at = [], 0
        for k in lengths:
            texts.append(" ".join(words[j] for j in picks[at : at + k]))
            at += k
        path = root / name / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"text": texts}), path)
        files.append(path)
    return files


def make_tokenizer(root: Path, sample: list[str]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=4000, special_tokens=["[PAD]", "[UNK]", "</s>"])
    tok.train_from_iterator(sample, trainer=trainer)
    path = root / "tokenizer.json"
    tok.save(str(path))
    return path


def direct(files: list[Path], tokenizer_path: Path) -> int:
    """Tokenize and pack with the tokenizer and numpy alone; the number of tokens packed."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_path))
    eos = tok.convert_tokens_to_ids("</s>")
    carry = np.zeros(0, dtype=np.int32)
    tokens = 0
    for f in files:
        texts = pq.read_table(f).column("text").to_pylist()
        for i in range(0, len(texts), 1000):
            ids = tok(texts[i : i + 1000], truncation=False)["input_ids"]
            flat = np.concatenate([carry] + [np.array([*x, eos], dtype=np.int32) for x in ids])
            whole = len(flat) // (SEQ * BATCH) * SEQ * BATCH
            batches = flat[:whole].reshape(-1, BATCH, SEQ)
            tokens += batches.size
            carry = flat[whole:]
    return tokens + len(carry)


def pipeline(files: list[Path], tokenizer_path: Path, prefetch: bool) -> int:
    from mixindex import (
        DatasetConfig,
        LoadStageConfig,
        MixStageConfig,
        PackStageConfig,
        Pipeline,
        PipelineConfig,
    )

    config = PipelineConfig(
        datasets=[
            DatasetConfig(name=f.parent.name, data_files=str(f), tokenizer=str(tokenizer_path))
            for f in files
        ],
        mix=MixStageConfig(seed=1, block_size=1000, stop_strategy="all_exhausted"),
        pack=PackStageConfig(seq_length=SEQ, eos_token_id=2, shuffle_packed=False),
        load=LoadStageConfig(batch_size=BATCH, prefetch_enabled=prefetch, drop_last=False),
    )
    p = Pipeline.from_config(config).source().tokenize().mix().pack().load()
    return sum(int(b["attention_mask"].sum()) for b in p.build())


def rate(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    tokens = fn()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k examples per source")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = 10_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_data(root, n)
        sample = pq.read_table(files[0]).column("text").to_pylist()[:2000]
        tok = make_tokenizer(root, sample)
        contenders: dict[str, Callable[[], int]] = {
            "direct (tokenizer + numpy packing)": lambda: direct(files, tok),
            "pipeline, prefetch on": lambda: pipeline(files, tok, True),
            "pipeline, prefetch off": lambda: pipeline(files, tok, False),
        }
        # The pipeline mixes all the examples; the token counts must agree.
        counts = {name: fn() for name, fn in contenders.items()}
        if len(set(counts.values())) != 1:
            raise SystemExit(f"token counts differ: {counts}")
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                rates[name].append(rate(fn))
    base = statistics.median(rates["direct (tokenizer + numpy packing)"])
    print(f"{2 * n:,} examples, {counts['pipeline, prefetch on']:,} tokens, seq_length {SEQ}")
    for name, values in rates.items():
        r = statistics.median(values)
        print(f"  {name:36s} {r / 1e6:7.2f} M tokens/s   ratio to direct {r / base:5.2f}")


if __name__ == "__main__":
    main()
