"""Readiness turns false the moment a stop signal arrives.

uvicorn handles SIGTERM/SIGINT itself: it stops accepting connections, lets requests
in flight finish (up to XENT_GRACEFUL_SHUTDOWN_SECONDS) and exits 0. What it does
not do is tell a load balancer early: lifespan shutdown, where readiness would
naturally flip, only runs after the last connection closed. So while the app runs we
wrap the installed handler: ours marks the app not ready, then hands the signal on
to uvicorn's unchanged.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger("service.api")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def not_ready_on_stop_signal(mark_not_ready: Callable[[], None]) -> Iterator[None]:
    """Within the block, a stop signal first calls ``mark_not_ready``, then the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. an app driven by a test client)
        return
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handle(signum: int, frame: FrameType | None) -> None:
        mark_not_ready()
        logger.info("%s received: not ready; finishing requests in flight", signal.Signals(signum).name)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        else:  # SIG_DFL or SIG_IGN: restore it and deliver the signal as if we had never been here
            signal.signal(signum, handler)
            signal.raise_signal(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
