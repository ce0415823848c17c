"""Chunks on many workers: the same bytes and digest whatever the executor and its workers."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clirun import assert_ok, run
from conftest import Data, SpecWriter, spec_dict
from sameindex import assert_same_index

import mixindex
from mixindex.builder import build
from mixindex.plan.planner import PlanInputs, Planner
from mixindex.plan.state import PlanState
from mixindex.spec.config import StopStrategy
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler

# Weights that change every few blocks and reach zero: the apportioner carries real state.
SCHEDULE = [
    {"step": 0, "weights": {"code": 0.6, "notes": 0.3, "docs": 0.1}},
    {"step": 900, "weights": {"code": 0.0, "notes": 0.5, "docs": 0.5}},
    {"step": 2000, "weights": {"code": 0.7, "notes": 0.0, "docs": 0.3}},
]


def mix_spec(**mix: Any) -> dict[str, Any]:
    return spec_dict(weights=None, weight_schedule=SCHEDULE, weight_schedule_type="linear", **mix)


def digest(index: Path) -> str:
    return str(json.loads((index / "zarr.json").read_text())["attributes"]["mixindex"]["digest"])


@pytest.mark.parametrize(
    "mix",
    [
        pytest.param({"block_size": 50, "num_examples": 2975}, id="restart"),
        pytest.param(
            {"block_size": 10, "stop_strategy": "all_exhausted", "num_examples": None},
            id="all_exhausted",
        ),
    ],
)
def test_every_executor_writes_the_same_index(
    data: Data, write_spec: SpecWriter, tmp_path: Path, mix: dict[str, Any]
) -> None:
    spec = write_spec(mix_spec(**mix))
    one = build(spec, tmp_path / "one.mixindex", chunk_blocks=3, executor=ThreadPoolExecutor(1))
    assert len(list((one / "row" / "c").iterdir())) > 4, "several chunks"
    # The default (a thread per core), more threads than chunks in flight, and processes.
    spawn = multiprocessing.get_context("spawn")
    executors: dict[str, Callable[[], Executor | None]] = {
        "default": lambda: None,
        "threads4": lambda: ThreadPoolExecutor(4),
        "processes": lambda: ProcessPoolExecutor(2, mp_context=spawn),
    }
    for name, make in executors.items():
        executor = make()
        try:
            other = build(spec, tmp_path / f"{name}.mixindex", chunk_blocks=3, executor=executor)
        finally:
            if executor is not None:
                executor.shutdown()
        assert_same_index(one, other)
        assert digest(one) == digest(other)
    # And the chunking changes the files but not the digest.
    whole = build(spec, tmp_path / "whole.mixindex")
    assert digest(whole) == digest(one)
    assert mixindex.open(whole).lookup(np.arange(len(mixindex.open(one))))[0].tolist() == (
        mixindex.open(one).lookup(np.arange(len(mixindex.open(one))))[0].tolist()
    )


def test_a_dask_cluster_writes_the_same_index(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    spec = write_spec(mix_spec(block_size=50, num_examples=2975))
    one = build(spec, tmp_path / "one.mixindex", chunk_blocks=3, executor=ThreadPoolExecutor(1))
    # Workers in this process (threads), as a cluster's run on other machines: they write their
    # chunks' zarr regions into the output's temporary folder themselves.
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with distributed.get_task_stream(client) as stream:
            executor = client.get_executor()
            other = build(spec, tmp_path / "dask.mixindex", chunk_blocks=3, executor=executor)
        chunks = len(list((one / "row" / "c").iterdir()))
        assert len(stream.data) == chunks, "every chunk ran on the cluster"
    assert_same_index(one, other)
    assert digest(one) == digest(other)


def test_workers_writing_at_once_write_every_chunk(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    """Eight workers write compressed chunks at the same moment: each array still has its
    chunks of zeros (a compressed index needs every chunk's file), whatever the caller's zarr
    setting, which is left as it was. (When the builder wrote through zarr, workers opening
    arrays at once undid each other's ``zarr.config.set``, and chunks of zeros went missing.)"""
    import zarr

    spec = write_spec(spec_dict(num_examples=2000))
    with zarr.config.set({"array.write_empty_chunks": False}):
        # One build catches the race about every other time (more often with more workers).
        for i in range(6):
            with ThreadPoolExecutor(8) as pool:
                out = build(
                    spec, tmp_path / f"{i}.mixindex", chunk_blocks=1, compress=True, executor=pool
                )
            assert zarr.config.get("array.write_empty_chunks") is False, f"build {i}"
            # The cursors of block 0 are all zeros.
            assert (out / "cursors" / "c" / "0" / "0").is_file(), f"build {i}"
            assert_ok(run("verify", out))


@pytest.mark.parametrize("stop", list(StopStrategy))
def test_planning_goes_on_from_any_chunk_state(stop: StopStrategy) -> None:
    """Tasks planned from a chunk's recorded state (through JSON) are the rest of the plan."""
    names = ("a", "b", "c")
    points = [
        WeightSchedulePoint(0, {"a": 0.5, "b": 0.3, "c": 0.2}),
        WeightSchedulePoint(3000, {"a": 0.1, "b": 0.0, "c": 0.9}),
        WeightSchedulePoint(6000, {"a": 0.0, "b": 0.6, "c": 0.4}),
    ]
    inputs = PlanInputs(
        names=names,
        lengths=(900, 2500, 4000),
        scheduler=WeightScheduler(points, "linear", names),
        block_size=10,
        seed=3,
        stop=stop,
        num_examples=8000 if stop is StopStrategy.RESTART else None,
        row_order="shuffled",
    )
    planner = Planner(inputs, 7)
    tasks = list(planner.tasks())
    assert len(tasks) > 10
    for i in (1, len(tasks) // 2, len(tasks) - 1):
        begin = tasks[i].begin
        assert begin is not None
        state = PlanState.from_json(json.loads(json.dumps(begin.to_json())), 3)
        again = list(planner.tasks(state))
        assert len(again) == len(tasks) - i
        for a, b in zip(again, tasks[i:], strict=True):
            assert (a.start, a.stop, a.last) == (b.start, b.stop, b.last)
            np.testing.assert_array_equal(a.counts, b.counts)
            np.testing.assert_array_equal(a.cursors, b.cursors)
