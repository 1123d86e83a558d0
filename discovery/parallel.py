"""A small process pool for batch work: one worker per core, a time limit per item, and crash tolerance.

``concurrent.futures`` cannot stop a single task that runs too long, and one crashed worker breaks the
whole pool. Here a worker that overruns or dies is replaced, its item is reported as failed, and the
rest of the batch carries on. Results are yielded as they finish, so callers can save them at once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator

from tqdm import tqdm

from discovery.errors import DiscoveryError

# A batch stops when this many items in a row have crashed their workers: the workers are broken
# (e.g. cannot import), not the items.
MAX_CONSECUTIVE_CRASHES = 8


@dataclass(frozen=True)
class TaskFailure:
    """Why an item produced no result: ``kind`` is ``timeout``, ``crash`` or ``error``."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _limit_threads(threads: int) -> None:
    """Cap this process's numeric threads (torch, BLAS, OpenMP). Workers share the cores: a worker whose torch
    runs a thread per core contends with the others, and its CPU seconds (the cost the oracle reports) grew
    1.6x for the same grids. The variable covers libraries imported later; torch, if already imported, is
    told directly."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _worker_loop(fn: Callable[[Any], Any], conn: Connection, threads: int = 1) -> None:
    # a process group of its own, so that killing an overrunning worker also kills the programs it started
    # (Zeo++ and EQeq run in child processes; orphaned, they went on for minutes with a core each)
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    _limit_threads(threads)
    try:
        while (item := conn.recv()) is not None:
            try:
                reply = ("ok", fn(item))
            except Exception as exc:  # report, keep the worker alive
                reply = ("error", f"{type(exc).__name__}: {exc}")
            conn.send(reply)
    except (EOFError, OSError):
        return  # the parent has gone: nobody is waiting for results


class _Worker:
    def __init__(self, ctx, fn: Callable[[Any], Any], threads: int = 1) -> None:
        self.conn, child = ctx.Pipe()
        self.threads = threads
        self.proc = ctx.Process(target=_worker_loop, args=(fn, child, threads), daemon=True)
        self.proc.start()
        child.close()
        self.item: Any = None
        self.started = 0.0

    def submit(self, item: Any) -> None:
        self.item, self.started = item, time.monotonic()
        self.conn.send(item)

    def kill(self) -> None:
        if hasattr(os, "killpg") and self.proc.pid is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and whatever it started
            except (ProcessLookupError, PermissionError):  # group gone; or the worker never got its own
                pass
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def map_with_timeout(fn: Callable[[Any], Any], items: Iterable[Any], *, timeout: float = 600.0,
                     workers: int | None = None, desc: str = "", progress: bool = True,
                     ) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, fn(item))`` in completion order; a failed item yields ``(item, TaskFailure)``.

    ``fn`` must be a module-level function (workers are spawned, not forked, so that threads of the
    parent, e.g. from torch, are not copied into them). Each worker gets an equal share of the cores for its
    numeric threads (one each when there are as many workers as cores).
    """
    pending = list(items)[::-1]
    n_total = len(pending)
    ctx = mp.get_context("spawn")
    pool: list[_Worker] = []
    bar = tqdm(total=n_total, desc=desc, disable=not progress, unit="item", dynamic_ncols=True)
    try:
        n_workers = min(workers or default_workers(), n_total)
        threads = max(1, default_workers() // max(1, n_workers))
        for _ in range(n_workers):
            pool.append(_Worker(ctx, fn, threads))
        busy: dict[Connection, _Worker] = {}
        crashes = 0
        while pending or busy:
            for w in pool:
                if w.conn not in busy and pending and w.proc.is_alive():
                    w.submit(pending.pop())
                    busy[w.conn] = w
            ready = wait(list(busy), timeout=_next_deadline(busy.values(), timeout))
            for conn in ready:
                w = busy.pop(conn)
                try:
                    status, value = conn.recv()
                    result = value if status == "ok" else TaskFailure("error", value)
                except (EOFError, OSError):
                    w.proc.join(5)
                    result = TaskFailure("crash", f"worker exited with code {w.proc.exitcode}")
                    pool[pool.index(w)] = _replace(ctx, fn, w)
                crashes = crashes + 1 if isinstance(result, TaskFailure) and result.kind == "crash" else 0
                if crashes >= MAX_CONSECUTIVE_CRASHES:
                    raise DiscoveryError(f"{crashes} workers in a row crashed (last: {result.message}); stopping the batch")
                bar.update()
                yield w.item, result
            for conn, w in list(busy.items()):
                if time.monotonic() - w.started > timeout:
                    busy.pop(conn)
                    pool[pool.index(w)] = _replace(ctx, fn, w)
                    bar.update()
                    yield w.item, TaskFailure("timeout", f"no result within {timeout:.0f} s")
    finally:
        bar.close()
        for w in pool:
            w.kill()


def _replace(ctx, fn: Callable[[Any], Any], w: _Worker) -> _Worker:
    w.kill()
    return _Worker(ctx, fn, w.threads)


def _next_deadline(workers: Iterable[_Worker], timeout: float) -> float:
    now = time.monotonic()
    return max(0.05, min((w.started + timeout - now for w in workers), default=timeout))
