"""One writer per output folder: a live holder refuses a second writer (naming pid and host), a lock
left by a dead process is taken over, and ``prepare`` uses the lock for its whole run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from talkface.utils.lock import LOCK_NAME, FolderLocked, WriterLock


def _holder(folder: Path, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                "job": "prepare", "since": "2026-01-01T00:00:00"}))


@pytest.fixture()
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_holder_refuses_with_pid_and_host(tmp_path: Path, live_pid: int) -> None:
    _holder(tmp_path, live_pid)
    with pytest.raises(FolderLocked) as err, WriterLock(tmp_path, "prepare"):
        pass
    message = str(err.value)
    assert f"pid {live_pid}" in message and socket.gethostname() in message and "prepare" in message
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == live_pid  # left alone


def test_stale_lock_from_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    _holder(tmp_path, _dead_pid())
    with WriterLock(tmp_path, "prepare"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_other_hosts_lock_is_never_taken(tmp_path: Path) -> None:
    _holder(tmp_path, _dead_pid(), host="another-machine.example")
    with pytest.raises(FolderLocked, match="another-machine.example"), WriterLock(tmp_path, "prepare"):
        pass


def test_second_writer_in_one_process_is_refused(tmp_path: Path) -> None:
    with WriterLock(tmp_path, "prepare"), pytest.raises(FolderLocked), WriterLock(tmp_path, "prepare"):
        pass


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "talkface.cli", *args]


def test_concurrent_prepare_is_refused_and_a_stale_lock_is_not(tmp_path: Path, grid_root: Path,
                                                               live_pid: int) -> None:
    out = tmp_path / "ds"
    _holder(out, live_pid)
    args = ["prepare", "grid", str(grid_root), "--speakers", "s2", "--out", str(out)]
    refused = subprocess.run(_cli(*args), capture_output=True, text=True)
    text = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 2, text
    assert f"pid {live_pid}" in text and socket.gethostname() in text
    assert not (out / "rows").exists() and not (out / "manifest.parquet").exists()  # nothing done

    _holder(out, _dead_pid())  # the holder died: its lock does not block the resume
    done = subprocess.run(_cli(*args), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "rows" / "s2_swwp2s.json").exists() and not (out / LOCK_NAME).exists()


def test_lock_file_being_written_is_not_stolen(tmp_path: Path) -> None:
    """Between O_EXCL creation and its record the file is empty: a second writer must wait, not steal."""
    (tmp_path / LOCK_NAME).write_text("")
    # the empty file turns into a live holder's record while the second writer waits
    threading.Timer(0.2, lambda: _holder(tmp_path, os.getppid())).start()
    with pytest.raises(FolderLocked), WriterLock(tmp_path, "prepare"):
        pass


def test_empty_lock_file_left_by_a_killed_writer_is_stale(tmp_path: Path) -> None:
    path = tmp_path / LOCK_NAME
    path.write_text("")
    old = path.stat().st_mtime - 60
    os.utime(path, (old, old))
    with WriterLock(tmp_path, "prepare"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
