"""A default executor whose threads never hold up the daemon's exit.

asyncio runs blocking library calls (paho's connect with its TLS handshake, getaddrinfo) in the loop's
default executor, and `asyncio.run` joins those threads on the way out. A connect to a broker that
accepted TCP but answers nothing (SIGSTOPped, a stuck middlebox) blocks its thread for the full connect
timeout, so SIGTERM took 10 s. With daemon threads the process exits as soon as the work that matters
(the queue's last commits) is done; an abandoned connect attempt has nothing to save.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["DaemonThreadExecutor"]

P = ParamSpec("P")
T = TypeVar("T")


class DaemonThreadExecutor(ThreadPoolExecutor):
    """One short-lived daemon thread per call (these calls are rare: connects and name look-ups).

    A ThreadPoolExecutor only because asyncio accepts nothing else as the default executor; its pool
    is never used.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the awaiting coroutine, as ThreadPoolExecutor does
                future.set_exception(exc)

        threading.Thread(target=run, name="vitalgate-blocking-call", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to join: the threads are daemons and end with the process."""

    def __repr__(self) -> str:
        return "DaemonThreadExecutor()"
