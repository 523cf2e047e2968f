"""The directory through which uvicorn workers share their Prometheus metrics.

With several workers each request lands in one process, so each process's counters hold only
a part. prometheus_client's multiprocess mode has every process write its values to files in
one directory and ``/metrics`` add them up. The library decides on that mode when it is first
imported, from ``PROMETHEUS_MULTIPROC_DIR``: so the directory is settled here, in the supervisor,
before any worker starts (this module must not import prometheus_client itself).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The variable prometheus_client reads; ``XENT_METRICS_DIR`` is the one operators set.
PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class UnwritableMetricsDirectory(Exception):
    """The metrics directory cannot be created or cleaned (a read-only filesystem without a tmpfs)."""


@contextmanager
def metrics_directory(configured: Path | None, workers: int) -> Iterator[Path | None]:
    """The directory for this run of ``xent serve``, exported to the workers' environment; None for one process.

    ``configured`` (``XENT_METRICS_DIR``) is used as given, after deleting the value files a
    previous run left there (stale values would be added to the new ones). Without it, several
    workers get a fresh directory under ``$TMPDIR``, removed again when the server exits;
    a single worker keeps the ordinary in-memory registry. Raises ``UnwritableMetricsDirectory``.
    """
    if configured is None and workers == 1:
        yield None
        return
    created = configured is None
    try:
        directory = Path(tempfile.mkdtemp(prefix="xent-metrics-")) if configured is None else configured
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    except OSError as error:
        where = f"XENT_METRICS_DIR={configured}" if configured else f"{workers} workers, under {tempfile.gettempdir()}"
        raise UnwritableMetricsDirectory(
            f"no writable metrics directory ({where}): {error}; mount a tmpfs on /tmp or set XENT_METRICS_DIR"
        ) from error
    os.environ[PROMETHEUS_ENV] = str(directory)
    os.environ["XENT_METRICS_DIR"] = str(directory)
    try:
        yield directory
    finally:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
