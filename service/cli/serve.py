"""``xent serve`` runs the service (one process, or workers under uvicorn's supervisor); ``xent openapi``
writes its OpenAPI document."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    import uvicorn


#: glibc's malloc asks the kernel for transparent huge pages for its large blocks (glibc 2.35+).
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"

#: The thread pools of the BLAS libraries NumPy may load (OpenBLAS, OpenMP, MKL): one thread each, unless set.
ONE_BLAS_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def start_environment(environ: Mapping[str, str], glibc: bool) -> dict[str, str]:
    """What the server process must have in its environment from its start, that ``environ`` lacks.

    - ``GLIBC_TUNABLES`` asking for huge pages (with ``glibc``): scoring a large batch touches tens of
      megabytes of fresh memory, and on a virtual machine each 4 KiB page fault costs microseconds:
      parsing a 9 MB JSON body took half again as long as with huge pages. A GLIBC_TUNABLES that
      already says anything about glibc.malloc.hugetlb is left as it is.
    - One BLAS thread (``ONE_BLAS_THREAD``, each only where unset): the core's BLAS calls are dot products
      of N numbers, which a second thread does not speed up, and OpenBLAS's threads wait for a core of
      their own: while other processes kept both cores of the development machine busy, a
      100,000 × 10 NPZ request took 376 ms (median) with NumPy's default 2 BLAS threads and 53 ms with one.
      A container given less CPU than the host has cores, or several workers, meet the same contention.

    >>> start_environment({"OMP_NUM_THREADS": "4"}, glibc=False)
    {'OPENBLAS_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    >>> start_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4", **dict.fromkeys(ONE_BLAS_THREAD, "1")}, True)
    {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1'}
    """
    wanted = {name: "1" for name in ONE_BLAS_THREAD if name not in environ}
    tunables = environ.get("GLIBC_TUNABLES", "")
    if glibc and "glibc.malloc.hugetlb" not in tunables:
        wanted["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE
    return wanted


def _reexec_with_start_environment() -> None:
    """Start this same command again, once (same PID, same arguments), with ``start_environment``.

    glibc reads its tunables, and a BLAS library its thread count, only when the process starts
    (NumPy may be imported already), hence the exec. Nothing happens when nothing is missing.
    """
    import platform

    glibc = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    wanted = start_environment(os.environ, glibc)
    if not wanted:
        return
    os.environ.update(wanted)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


def serve(args: argparse.Namespace) -> int:
    if args.whole_process:
        _reexec_with_start_environment()
    import uvicorn

    from service.settings import Settings

    # Flags override the environment; worker processes rebuild Settings from it, so put them there.
    for name in ("host", "port", "workers", "log_level"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"XENT_{name.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValidationError as error:
        for item in error.errors(include_url=False):
            sys.stderr.write(f"xent: invalid setting XENT_{str(item['loc'][0]).upper()}: {item['msg']}\n")
        return 2
    from service.logs import log_config
    from service.metrics_dir import UnwritableMetricsDirectory, metrics_directory
    from service.server import http_protocol

    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal under the handler it found on
    # start; with the default one that kills the process (exit 143) after a clean drain. A no-op
    # handler here makes a drained stop what it is: exit 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda signum, frame: None)
    try:
        # Entered before any worker imports prometheus_client: several workers share one metrics directory.
        with metrics_directory(settings.metrics_dir, settings.workers):
            options: dict[str, Any] = {
                "factory": True,
                "host": settings.host,
                "port": settings.port,
                "workers": settings.workers,
                "log_level": settings.log_level,
                "log_config": log_config(settings.log_level),  # JSON lines on stdout
                "access_log": False,  # the request middleware writes one richer line per request
                "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
                # Idle keep-alive connections close after 5 s (uvicorn's default, said out loud): slow
                # or silent clients cannot hold a connection; a slow body is cut by XENT_BODY_TIMEOUT_SECONDS.
                "timeout_keep_alive": 5,
                # httptools with limits on request heads (XENT_MAX_HEADER_BYTES, XENT_MAX_HEADERS,
                # XENT_HEADER_TIMEOUT_SECONDS): uvicorn has none of its own.
                "http": http_protocol(settings),
            }
            if settings.workers > 1:
                _supervise(uvicorn.Config("service.api.app:create_app", **options))
            else:
                uvicorn.run("service.api.app:create_app", **options)
    except UnwritableMetricsDirectory as error:
        sys.stderr.write(f"xent: {error}\n")
        return 2
    return 0


def _supervise(config: uvicorn.Config) -> None:
    """Run ``config``'s workers under uvicorn's supervisor, which also stops listening when told to stop.

    Each worker closes its copy of the listening socket when SIGTERM reaches it, but uvicorn's
    supervisor keeps its own copy open until the last worker has drained. Meanwhile the kernel
    still completes handshakes into a backlog nobody accepts from, and those clients hang until
    the exit resets them. With the supervisor's copy closed first, new connections are refused
    as soon as the workers have closed theirs, as with one worker.
    """
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def handle_term(self) -> None:
            self.stop_listening()
            super().handle_term()

        def handle_int(self) -> None:
            self.stop_listening()
            super().handle_int()

        def stop_listening(self) -> None:
            for sock in self.sockets:
                sock.close()

    Supervisor(config, sockets=[config.bind_socket()]).run()


def openapi_document() -> str:
    """The app's OpenAPI document as committed: indented JSON with a final newline."""
    from service.api.app import create_app
    from service.settings import Settings

    return json.dumps(create_app(Settings()).openapi(), indent=2, ensure_ascii=False) + "\n"


def openapi(args: argparse.Namespace) -> int:
    text = openapi_document()
    if args.path is None:
        sys.stdout.write(text)
    else:
        Path(args.path).write_text(text, encoding="utf-8")
    return 0


def add_parsers(commands: Any) -> None:
    """Register ``xent serve`` and ``xent openapi`` on the ``xent`` command's subparsers."""
    parser = commands.add_parser("serve", help="run the HTTP service (settings from XENT_* variables)")
    parser.add_argument("--host", help="interface to bind (XENT_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (XENT_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (XENT_WORKERS, default 1)")
    parser.add_argument("--log-level", help="log level (XENT_LOG_LEVEL, default info)")
    parser.set_defaults(run=serve)
    document = commands.add_parser("openapi", help="write the OpenAPI document (to stdout without PATH)")
    document.add_argument("path", nargs="?", help="file to write")
    document.set_defaults(run=openapi)
