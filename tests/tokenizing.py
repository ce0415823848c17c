"""A small tokenizer built locally (no hub): word-level over a fixed vocabulary of words.

``make_tokenizer(folder)`` writes ``folder/tokenizer.json`` (read with ``tokenizers``) and a
``save_pretrained`` folder ``folder/hf`` (read with ``AutoTokenizer``); both give each word its
own id, ``[UNK]`` for others, ``[PAD]`` = 0 and ``</s>`` = 2.
"""

from __future__ import annotations

from pathlib import Path

WORDS = [f"w{i}" for i in range(200)] + ["code", "text", "example", "def", "return", "the"]
SPECIALS = ["[PAD]", "[UNK]", "</s>"]


def make_tokenizer(folder: Path) -> tuple[Path, Path]:
    """``(tokenizer.json path, AutoTokenizer folder)``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1)
    tok.train_from_iterator([" ".join(WORDS)] * 2, trainer=trainer)
    path = folder / "tokenizer.json"
    tok.save(str(path))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="</s>")
    fast.save_pretrained(str(folder / "hf"))
    return path, folder / "hf"
