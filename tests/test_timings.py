"""Per-step build timings (`steps.timed`): each step's wall time and peak memory land in
`builds/<split>/timings.json`, a failed step records nothing, and the tiny build
records every step it ran."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from rag_rec.steps import TIMINGS, peak_rss_mb, timed


def test_timed_records_each_step_and_keeps_the_others(tmp_path) -> None:
    with timed(tmp_path, "kg"):
        blob = b"\x01" * (64 * 2**20)  # 64 MB touched: the peak may rise, never falls
    with timed(tmp_path, "index"):
        pass
    timings = json.loads((tmp_path / TIMINGS).read_text())
    assert set(timings) == {"kg", "index"}
    assert timings["kg"]["seconds"] >= 0 and timings["kg"]["peak_rss_mb"] <= peak_rss_mb()
    assert timings["index"]["peak_rss_rise_mb"] <= timings["kg"]["peak_rss_rise_mb"]
    del blob


def test_a_failed_step_records_nothing(tmp_path) -> None:
    with pytest.raises(RuntimeError), timed(tmp_path, "kg"):
        raise RuntimeError("boom")
    assert not (tmp_path / TIMINGS).exists()


def test_the_tiny_build_times_every_step(tiny_settings, tiny_build) -> None:
    timings = json.loads((tiny_settings.home / "builds" / "full" / TIMINGS).read_text())
    assert {"text", "kg", "index", "sources/tuning", "sources/serving", "sources/holdout",
            "scorer", "blend", "like"} <= set(timings)
    assert all(t["seconds"] >= 0 and t["peak_rss_mb"] > 0 for t in timings.values())
    # The holdout sources were fit beside the serving ones, in a process of their own
    # (build.fit_beside), and neither process's record dropped the other's.
    assert timings["sources/serving"]["pid"] == timings["scorer"]["pid"] == os.getpid()
    assert timings["sources/holdout"]["pid"] != os.getpid()


def test_steps_timed_at_once_in_two_processes_keep_both(tmp_path) -> None:
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_time_steps, args=(tmp_path, f"p{k}")) for k in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    timings = json.loads((tmp_path / TIMINGS).read_text())
    assert set(timings) == {f"p{k}/{n}" for k in range(2) for n in range(40)}


def _time_steps(folder, prefix: str) -> None:
    for n in range(40):
        with timed(folder, f"{prefix}/{n}"):
            pass
