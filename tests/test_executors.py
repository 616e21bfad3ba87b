"""The process pool every per-clip command runs on: each item recorded once, the calling process
working beside its workers when it offers to, and workers started single-threaded."""

from __future__ import annotations

import os

from talkface.core.executors import SINGLE_THREAD_ENV, run_process_pool

_SET_UP: dict[str, str] = {}


def _init(tag: str) -> None:
    _SET_UP["tag"] = tag


def _square(item: int) -> tuple[int, int, int, str | None, str | None]:
    return item, item * item, os.getpid(), _SET_UP.get("tag"), os.environ.get("OMP_NUM_THREADS")


def test_every_item_once_with_the_parent_as_one_of_the_workers():
    _init("parent")
    got: list[tuple] = []
    run_process_pool(_square, list(range(40)), got.append, 2, _init, ("child",), in_parent=_square)
    assert sorted(g[0] for g in got) == list(range(40))
    assert all(g[1] == g[0] ** 2 for g in got)
    pids = {g[2] for g in got}
    assert os.getpid() in pids and len(pids) == 2  # the parent and one spawned worker shared the work
    assert all(g[3] == ("parent" if g[2] == os.getpid() else "child") for g in got)
    assert all(g[4] == SINGLE_THREAD_ENV["OMP_NUM_THREADS"] for g in got if g[2] != os.getpid())


def test_the_parent_environment_is_restored(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    got: list[tuple] = []
    run_process_pool(_square, [1, 2, 3], got.append, 2, _init, ("child",))
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "7"
    assert sorted(g[0] for g in got) == [1, 2, 3] and os.getpid() not in {g[2] for g in got}


def test_one_worker_with_the_parent_spawns_nothing():
    _init("parent")
    got: list[tuple] = []
    run_process_pool(_square, [4, 5], got.append, 1, _init, ("child",), in_parent=_square)
    assert [(g[0], g[2], g[3]) for g in got] == [(4, os.getpid(), "parent"), (5, os.getpid(), "parent")]
