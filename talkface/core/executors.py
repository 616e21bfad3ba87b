"""Where the per-clip work runs: in this process, a process pool, or Ray tasks on a cluster.

Every executor runs the same function on one clip at a time, with the backends built once per worker
process: :func:`talkface.prepare.run.prepare_clip` for ``prepare`` (wrapped by
:func:`talkface.prepare.run.run_ray`), :func:`talkface.evaluate.runner.score_in_worker` for
``evaluate``; both go through :func:`run_ray_tasks`, which knows nothing of either. The process that
called ``run_prepare`` holds the dataset's writer lock, decides which clips are left (resume), receives
each finished row and alone writes the manifest; the one that called ``run_evaluate`` receives each
clip's rows and alone writes the results (through ``ResultsStore``, under the results folder's writer
lock). ``prepare``'s workers write a clip's files (``clips/<id>.npz``, ``crops/<id>.mp4``,
``rows/<id>.json``) atomically (temporary file, then rename) into the dataset folder, so with Ray that
folder must be on storage every node sees at the same path (see docs/scale.md); ``evaluate``'s workers
only read.

``ray``: ``ray.init(address=...)`` joins a running cluster (``auto``, or ``host:port`` of ``ray start
--head``); without an address a Ray instance is started on this machine with ``num_cpus`` CPUs. When
Ray is already initialised (a notebook, a test), that instance is used and left running. Each clip is
one task needing one CPU; at most twice the cluster's CPUs are in flight. A task whose worker dies
(killed, out of memory, node lost) becomes a failure row naming the cause, as a crashing clip does
in the pool.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

EXECUTORS = ("process", "ray")
#: ``--ray-address`` of every command that runs clips on an executor (prepare, evaluate).
RAY_ADDRESS_HELP = ("Ray cluster to join with --executor ray: auto, or host:port of 'ray start --head' "
                    "(default: start Ray on this machine with --workers CPUs).")


def executor_help(shared: str) -> str:
    """``--executor`` of a command whose ``shared`` folders Ray workers read or write."""
    return (f"process (this machine: --workers processes) or ray (Ray tasks; needs the ray extra; {shared} "
            "must be on storage every node sees).")


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


# -- the driver side ------------------------------------------------------------------------------


#: Thread counts a pool's worker processes start with: the pool is the parallelism, so each worker's
#: BLAS, OpenMP and torch use one thread (two workers of two threads on two cores oversubscribe them).
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (what a spawned process starts with), restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ready() -> None:
    """A task that only makes the pool spawn a worker (see :func:`start_process_pool`)."""


def start_process_pool(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> Any:
    """Spawn ``workers`` processes now, each set up by ``initializer(*initargs)`` and started with one
    BLAS/OpenMP thread, so that their start-up (a Python process, imports) overlaps the caller's own
    work before it has items; hand the pool to :func:`run_process_pool` (``pool=``), or stop it with
    :func:`stop_process_pool`."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with environment(SINGLE_THREAD_ENV):
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                   initializer=initializer, initargs=initargs)
        for _ in range(workers):  # the executor spawns a process per submitted task, up to max_workers
            pool.submit(_ready)
    return pool


def stop_process_pool(pool: Any, idle: bool = False) -> None:
    """Stop a pool's workers at once and drop its queued items: SIGTERM, so a worker that installed a
    handler unwinds its atomic writers; ``idle`` (every result is in, no worker holds an item): SIGKILL,
    since there is nothing to unwind and a handler that raises while the worker waits on its task queue
    could print a traceback from the worker (seen once: ``EOFError`` in ``call_queue.get``)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            (process.kill if idle else process.terminate)()
    pool.shutdown(wait=True, cancel_futures=True)


def run_process_pool(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    record: Callable[[Any], None],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    in_parent: Callable[[Any], Any] | None = None,
    pool: Any = None,
) -> None:
    """Run ``fn(item)`` in ``workers`` spawned processes, each set up once by ``initializer(*initargs)``;
    ``record`` gets each result in completion order, in this process.

    ``in_parent`` (a function this process has already set up, e.g. ``fn`` after ``initializer`` ran
    here): this process is one of the ``workers`` and spawns one fewer. It runs items itself between
    recording the others' results, so its set-up is not paid twice and the others' start-up (spawning,
    imports, models) overlaps its work instead of delaying the run.

    Each spawned worker is handed its next item the moment it returns one (from the pool's result
    thread, not when this process next looks), so with ``in_parent`` it holds one item at a time and no
    item waits behind a busy worker while this process is idle at the end of a run (measured: up to
    one clip's time at the end of every ``evaluate``). Without ``in_parent`` two items per worker are in
    flight. Either way a stop loses little and memory stays flat. The workers start with one
    BLAS/OpenMP thread each (:data:`SINGLE_THREAD_ENV`). On any exception (Ctrl-C included) the workers
    are terminated at once (SIGTERM: a worker that installed a handler unwinds its atomic writers,
    leaving no partial file), queued items are dropped, and the exception propagates. ``spawn``, not
    ``fork``: forking after torch, dlib or rich started threads can deadlock. ``pool``: one
    :func:`start_process_pool` started earlier (of ``workers``, less one with ``in_parent``), used
    instead of a new one and stopped at the end.
    """
    import queue as queues
    import threading

    items_left = deque(items)
    spawned = workers - 1 if in_parent is not None else workers
    if spawned < 1:
        if pool is not None:  # started for nothing: no worker holds an item
            stop_process_pool(pool, idle=True)
        for item in items_left:
            record((in_parent or fn)(item))
        return
    if pool is None:
        pool = start_process_pool(spawned, initializer, initargs)
    finished: queues.SimpleQueue = queues.SimpleQueue()  # futures done, in completion order
    lock = threading.Lock()  # the parent's pops and the result thread's submissions share items_left
    in_flight = 0  # items handed to a worker whose result this process has not recorded yet
    stopping = threading.Event()

    def submit_next() -> None:
        nonlocal in_flight
        with lock:
            if stopping.is_set() or not items_left:
                return
            item = items_left.popleft()
            in_flight += 1
        try:
            future = pool.submit(fn, item)
        except BaseException:
            with lock:  # not handed out after all: back at the front, for the caller's loop
                items_left.appendleft(item)
                in_flight -= 1
            raise
        future.add_done_callback(done)

    def done(future: Any) -> None:
        finished.put(future)
        if not future.cancelled() and future.exception() is None:
            try:
                submit_next()
            except RuntimeError:  # the pool is broken or shutting down: the caller's loop will say so
                pass

    def take_own() -> Any:
        with lock:
            return items_left.popleft() if items_left else None

    try:
        for _ in range(spawned if in_parent is not None else 2 * spawned):
            submit_next()
        while True:
            with lock:
                if not items_left and in_flight == 0:
                    break
            own = take_own() if in_parent is not None else None
            if own is not None:
                record(in_parent(own))
            elif in_flight == 0:  # nothing handed out (a refused hand-out): hand out here, or raise
                submit_next()
                continue
            while True:  # the others' results; no waiting while this process has items of its own
                try:
                    future = finished.get(block=own is None)
                except queues.Empty:
                    break
                with lock:
                    in_flight -= 1
                record(future.result())
                if own is None:
                    break
    except BaseException:
        stopping.set()
        stop_process_pool(pool)
        raise
    # every result is in, so the workers are idle: stopped at once rather than left to tear their
    # interpreters down while this process waits (0.1-0.3 s at the end of every run, measured)
    stop_process_pool(pool, idle=True)


def run_ray_tasks(
    fn: Callable[..., Any],
    items: Sequence[Any],
    shared: Sequence[Any],
    record: Callable[[Any], None],
    failure: Callable[[Any, str], Any],
    address: str | None = None,
    num_cpus: int | None = None,
) -> None:
    """Run ``fn(item, *shared)`` as one Ray task per item; ``record`` gets each result in completion
    order, ``failure(item, "ray task failed: ...")`` stands in for the result of a task that died.

    ``fn`` must be importable by the workers (a module-level function); ``shared`` is put in Ray's
    object store once. KeyboardInterrupt cancels the tasks in flight and propagates.
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
    task = ray.remote(num_cpus=1, max_retries=0)(fn)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        shared_refs = [ray.put(value) for value in shared]
        queue = deque(items)
        pending: dict[Any, Any] = {}
        try:
            while queue or pending:
                while queue and len(pending) < 2 * cpus:
                    item = queue.popleft()
                    pending[task.remote(item, *shared_refs)] = item
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died: not the clip's fault
                        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        result = failure(item, f"ray task failed: {type(exc).__name__}: {message}")
                    record(result)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
