"""``block_mixture_interleave``: EasyDeL's one-call mix of Hugging Face datasets, exact underneath.

    >>> import datasets
    >>> code = datasets.Dataset.from_dict({"text": ["def f(): pass", "x = 1"]})
    >>> text = datasets.Dataset.from_dict({"text": ["hello", "world", "again"]})
    >>> mixed = block_mixture_interleave({"code": code, "text": text},
    ...                                  weights={"code": 0.4, "text": 0.6}, block_size=5, seed=42)
    >>> examples = iter(mixed)
    >>> next(examples), next(examples)
    ({'text': 'def f(): pass', '__source__': 'code'}, {'text': 'hello', '__source__': 'text'})
    >>> state = mixed.state_dict()  # later, or in another process:
    >>> mixed.load_state_dict(state)
    >>> next(iter(mixed))
    {'text': 'world', '__source__': 'text'}

The result is a ``datasets.IterableDataset``. With map-style inputs (``datasets.Dataset``) it
serves the same ``(source, row)`` sequence as ``mixindex build`` of the spec with the same
datasets, weights, block size, seed and stop strategy and ``row_order = "sequential"``
(:func:`equivalent_spec` writes it), so a team can move to a precomputed index without changing
what the model sees. Its ``state_dict()`` resumes at the mix position: by rows for map-style
inputs, and with each stream's own state for streaming ones.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from datasets.iterable_dataset import _BaseExamplesIterable

from mixindex.errors import SpecError
from mixindex.mixing.inputs import as_input
from mixindex.mixing.streams import Mixer
from mixindex.mixing.walk import MixSettings, make_settings

if TYPE_CHECKING:
    import datasets
    import numpy as np

__all__ = ["MixtureExamplesIterable", "block_mixture_interleave", "equivalent_spec"]


class MixtureExamplesIterable(_BaseExamplesIterable):  # type: ignore[misc]  # untyped base
    """A :class:`~mixindex.mixing.streams.Mixer` as HF examples; the state is the mix's."""

    def __init__(self, mixer: Mixer) -> None:
        super().__init__()
        self.mixer = mixer
        self._sleep_on_threads_shutdown = False

    def _init_state_dict(self) -> dict[str, Any]:
        self._state_dict = self.mixer.initial_state()
        return self._state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        self.mixer.check_state(state_dict)
        self._init_state_dict()
        if not isinstance(self._state_dict, dict):
            raise RuntimeError(
                f"mixindex internal error: self._state_dict is {type(self._state_dict).__name__}"
            )
        # The same dict object, filled: the dataset keeps a reference to it.
        self._state_dict.clear()
        self._state_dict.update(copy.deepcopy(state_dict))
        return self._state_dict

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        state = self._state_dict
        live = state if isinstance(state, dict) else None
        start = live["position"] if live is not None else 0
        yield from enumerate(self.mixer.iterate(live), start)

    def shuffle_data_sources(self, generator: np.random.Generator) -> MixtureExamplesIterable:
        # The mix is shuffled by its plan; a new epoch must not reorder it.
        return self

    def shard_data_sources(
        self, num_shards: int, index: int, contiguous: bool = True
    ) -> MixtureExamplesIterable:
        return self

    def reshard_data_sources(self) -> MixtureExamplesIterable:
        return self

    @property
    def num_shards(self) -> int:
        return 1


def block_mixture_interleave(
    datasets: Mapping[str, Any],
    weights: Mapping[str, float] | None = None,
    block_size: int = 1000,
    seed: int = 42,
    stop: str = "restart",
    *,
    num_examples: int | None = None,
) -> datasets.IterableDataset:
    """A weighted mix of ``datasets`` (``{name: dataset}``) as a ``datasets.IterableDataset``.

    Each example is a new dict with the dataset's fields and ``"__source__"`` (its name).
    ``weights`` (any scale; None for equal) must name exactly the datasets. Blocks of
    ``block_size`` positions get exact whole counts (S2) in an order keyed by ``(seed, block)``.
    ``stop`` is ``"restart"`` (datasets start a new pass; endless unless ``num_examples`` is
    given), ``"first_exhausted"`` (ends just before the first row that would repeat) or
    ``"all_exhausted"`` (ends once every dataset has served all its rows; earlier ones restart).
    A dataset is a ``datasets.Dataset`` or ``IterableDataset``, a ``ShardedDataSource``, or an
    iterable of dicts (a function returning one can be read again for each pass).
    """
    import datasets as hf

    mixer = build_mixer(datasets, weights, block_size, seed, stop, num_examples)
    return hf.IterableDataset(MixtureExamplesIterable(mixer))


def build_mixer(
    inputs: Mapping[str, Any],
    weights: Mapping[str, float] | None,
    block_size: object,
    seed: object,
    stop: object,
    num_examples: object,
) -> Mixer:
    if not isinstance(inputs, Mapping):
        raise SpecError(
            f"datasets must be a dict of name -> dataset, got {type(inputs).__name__}; write "
            'datasets={"code": code_ds, "text": text_ds}'
        )
    settings = _settings(list(inputs), weights, block_size, seed, stop, num_examples)
    return Mixer(settings, [as_input(name, ds) for name, ds in inputs.items()])


def equivalent_spec(
    datasets: Mapping[str, Any],
    weights: Mapping[str, float] | None = None,
    block_size: int = 1000,
    seed: int = 42,
    stop: str = "restart",
    *,
    num_examples: int | None = None,
) -> dict[str, Any]:
    """The ``[mix]`` table of the ``mixindex build`` spec that serves the same sequence."""
    return _settings(list(datasets), weights, block_size, seed, stop, num_examples).spec_mix()


def _settings(
    names: list[str],
    weights: Mapping[str, float] | None,
    block_size: object,
    seed: object,
    stop: object,
    num_examples: object,
) -> MixSettings:
    """block_mixture_interleave's arguments checked into the planner's settings (no schedule;
    the stop strategy is called ``stop`` in messages, as in its signature)."""
    return make_settings(
        names,
        weights=weights,
        weight_scheduler=None,
        block_size=block_size,
        seed=seed,
        stop=stop,
        stop_name="stop",
        num_examples=num_examples,
    )
