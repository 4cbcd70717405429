"""Many samples at once: one long-lived sandbox per worker thread, verdicts in input order.

Host-side work per sample is a couple of pipe writes and reads (the GIL is released while
waiting), so threads suffice; the CPU work happens in the sandboxes. The worker count may exceed
the cores: a worker whose sample sleeps or times out holds no core.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar, cast

from selfalign.sandbox.core import Sandbox
from selfalign.sandbox.verdict import Verdict

T = TypeVar("T")
R = TypeVar("R")


class SandboxPool:
    """``n_workers`` sandboxes of one backend; ``run_many`` spreads samples over them.

    Extra keyword arguments go to every :class:`Sandbox` (``timeout_s``, ``memory_bytes``,
    ``upstream_exec_in_function``, ``allow_unsandboxed``, ...).
    """

    def __init__(self, n_workers: int = 2, backend: str = "gvisor", **sandbox_kwargs: Any) -> None:
        if n_workers < 1:
            raise ValueError("n_workers must be at least 1")
        self.n_workers = n_workers
        self.backend = backend
        self.sandboxes = [Sandbox(backend, **sandbox_kwargs) for _ in range(n_workers)]
        self._started = False

    def __enter__(self) -> SandboxPool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start every sandbox (concurrently: a gVisor start is mostly waiting)."""
        if self._started:
            return
        with ThreadPoolExecutor(self.n_workers) as executor:
            list(executor.map(lambda sb: sb.start(), self.sandboxes))
        self._started = True

    def close(self) -> None:
        with ThreadPoolExecutor(self.n_workers) as executor:
            list(executor.map(lambda sb: sb.close(), self.sandboxes))
        self._started = False

    @property
    def restarts(self) -> int:
        """How many times a wedged or dead sandbox was replaced."""
        return sum(sb.restarts for sb in self.sandboxes)

    def run_many(
        self,
        codes: Sequence[str],
        timeout_s: float | None = None,
        on_result: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """Run every sample; return the verdicts in the order of ``codes``.

        ``on_result(index, verdict)`` is called as each finishes (from worker threads, under a
        lock), e.g. for a progress bar.
        """
        self.start()
        return self.map(lambda sandbox, code: sandbox.run(code, timeout_s), codes, on_result)

    def map(
        self,
        work: Callable[[Sandbox, T], R],
        items: Sequence[T],
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """``work(sandbox, item)`` for every item, each worker with its own sandbox; the results
        in the order of ``items``. A sandbox the work never runs anything in is never started
        (:meth:`Sandbox.run` starts it on first use), so work that needs none costs none.

        ``on_result(index, result)`` is called as each finishes, from the worker's thread under
        a lock. The first exception stops the other workers after their current item and is
        raised here.
        """
        results: list[R | None] = [None] * len(items)
        next_index = iter(range(len(items)))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker(sandbox: Sandbox) -> None:
            while True:
                with lock:
                    index = None if errors else next(next_index, None)
                if index is None:
                    return
                try:
                    result = work(sandbox, items[index])
                except BaseException as exc:  # noqa: B036 - re-raised below, in the caller
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    results[index] = result
                    if on_result is not None:
                        on_result(index, result)

        workers = min(self.n_workers, max(1, len(items)))
        with ThreadPoolExecutor(workers) as executor:
            for future in [executor.submit(worker, sb) for sb in self.sandboxes[:workers]]:
                future.result()
        if errors:
            raise errors[0]
        return cast(list[R], results)


def run_many(
    codes: Sequence[str],
    timeout_s: float | None = None,
    *,
    n_workers: int = 2,
    backend: str = "gvisor",
    **sandbox_kwargs: Any,
) -> list[Verdict]:
    """One-shot convenience: start a pool, run ``codes``, stop the pool."""
    with SandboxPool(n_workers, backend, **sandbox_kwargs) as pool:
        return pool.run_many(codes, timeout_s)
