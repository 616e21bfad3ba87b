"""Where the per-clip preparation runs: in this process, a process pool, or Ray tasks on a cluster.

Every executor runs the same function, :func:`talkface.preprocess.pipeline.prepare_clip`, on one clip
at a time, with the backends built once per worker process. The process that called ``run_prepare``
holds the dataset's writer lock, decides which clips are left (resume), receives each finished row and
alone writes the manifest. Workers write a clip's files (``clips/<id>.npz``, ``crops/<id>.mp4``,
``rows/<id>.json``) atomically (temporary file, then rename) into the dataset folder, so with Ray that
folder must be on storage every node sees at the same path (see docs/scale.md).

``ray``: ``ray.init(address=...)`` joins a running cluster (``auto``, or ``host:port`` of ``ray start
--head``); without an address a Ray instance is started on this machine with ``num_cpus`` CPUs. When
Ray is already initialised (a notebook, a test), that instance is used and left running. Each clip is
one task needing one CPU; at most twice the cluster's CPUs are in flight. A task whose worker dies
(killed, out of memory, node lost) becomes a ``failed`` row naming the cause, as a crashing clip does
in the pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

EXECUTORS = ("process", "ray")


class ExecutorError(RuntimeError):
    """An executor that cannot run (Ray missing, cluster unreachable): one sentence for the user."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(
            "--executor ray needs Ray: pip install 'talkface[ray]' (or pip install 'ray>=2.9')"
        ) from exc
    return ray


# -- the worker side ------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], Any] = {}


def _tools_for(config: Any, root: str) -> tuple[Any, Any]:
    """(ClipTools, DatasetStore) of this worker process, built on its first clip of a run."""
    from talkface.preprocess.pipeline import ClipTools
    from talkface.store.dataset_writer import DatasetStore

    key = (repr(config), root)
    if key not in _CACHE:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        _CACHE.clear()
        _CACHE[key] = (ClipTools(config), DatasetStore(root))
    return _CACHE[key]


def prepare_in_worker(source: Any, config: Any, root: str) -> dict[str, Any]:
    """One clip in a Ray worker: the pipeline's ``prepare_clip`` with this worker's cached backends."""
    from talkface.preprocess.pipeline import prepare_clip

    tools, store = _tools_for(config, root)
    return prepare_clip(source, store, tools)


# -- the driver side ------------------------------------------------------------------------------


def run_ray(
    todo: Sequence[Any],
    root: str,
    config: Any,
    record: Callable[[dict[str, Any]], None],
    failure_row: Callable[[Any, str], dict[str, Any]],
    address: str | None = None,
    num_cpus: int | None = None,
) -> None:
    """Prepare ``todo`` as Ray tasks; ``record`` gets each row in completion order.

    ``failure_row(source, message)`` builds (and writes) the row of a clip whose task died.
    KeyboardInterrupt cancels the tasks in flight (their atomic writes leave only temporary files,
    removed by the next run) and propagates.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
                         log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(f"cannot start or join Ray at {address or 'this machine'}: {exc}") from exc
        started = True
    task = ray.remote(num_cpus=1, max_retries=0)(prepare_in_worker)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        config_ref = ray.put(config)
        queue = list(todo)
        pending: dict[Any, Any] = {}
        try:
            while queue or pending:
                while queue and len(pending) < 2 * cpus:
                    source = queue.pop(0)
                    pending[task.remote(source, config_ref, root)] = source
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    source = pending.pop(ref)
                    try:
                        row = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died: not the clip's fault
                        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        row = failure_row(source, f"ray task failed: {type(exc).__name__}: {message}")
                    record(row)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
