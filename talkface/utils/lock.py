"""One writer per output folder: a lock file holding the writer's pid, host and command.

Two ``prepare`` (or ``train``, ``evaluate``) runs into one folder would both do every item and race on
the same files. The lock is created with ``O_EXCL`` (atomic on local and NFS v3+ file systems); a second
writer is refused with a message naming the holder. A lock left by a process that no longer runs on
this host is stale and is taken over with a warning, so a killed run never blocks its own resume.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger("talkface.lock")

LOCK_NAME = ".talkface.lock"
UNREADABLE_GRACE_S = 2.0  # a lock file may be empty for a moment between its creation and its record


class FolderLocked(RuntimeError):
    """Another live process is writing to the folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WriterLock:
    """``with WriterLock(folder, "prepare"):`` holds ``folder/.talkface.lock`` for the block."""

    def __init__(self, folder: str | os.PathLike, job: str) -> None:
        self.folder = Path(folder)
        self.job = job
        self.path = self.folder / LOCK_NAME
        self._held = False

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "job": self.job,
                  "command": " ".join(sys.argv), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = self._read_holder()
                if holder is None or self._stale(holder):
                    log.warning("taking over a stale lock %s (%s)", self.path, holder)
                    self.path.unlink(missing_ok=True)
                    continue
                raise FolderLocked(
                    f"{self.folder} is being written by another talkface {holder.get('job', '')} run "
                    f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}): "
                    f"wait for it to finish, or delete {self.path} if that process is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self._held = True
            return
        raise FolderLocked(f"could not take the lock {self.path}")

    def _read_holder(self) -> dict | None:
        """The holder's record; a file still being written by its creator gets a moment to fill.

        None when it stays unreadable for ``UNREADABLE_GRACE_S`` after it was created (a writer killed
        between creating and filling it), which counts as stale.
        """
        while True:
            holder = self.holder()
            if holder is not None:
                return holder
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            if age > UNREADABLE_GRACE_S:
                return None
            time.sleep(0.05)

    @staticmethod
    def _stale(holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return False  # another machine's process: cannot check, so never steal it
        pid = holder.get("pid")
        return not isinstance(pid, int) or (pid != os.getpid() and not _pid_alive(pid))

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
