"""Logs as JSON lines on stdout: one object per record, the same shape for uvicorn's messages and ours.

``xent serve`` hands :func:`log_config` to uvicorn, which applies it in the supervisor and in
every worker. This module imports neither the web stack nor prometheus_client, so the CLI can
use it before the workers' environment is settled.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

#: uvicorn's extra level below debug; ``XENT_LOG_LEVEL=trace`` reaches it.
TRACE = 5
LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}
LEVELS |= {"debug": logging.DEBUG, "trace": TRACE}

#: The logger of the one-line-per-request records.
REQUEST_LOGGER = "xent.requests"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}`` on one line; ``extra={"fields": {...}}`` adds keys.

    Only what a record carries in ``fields`` is added, never its arguments' reprs, so a log
    call cannot leak a request payload by accident.
    """

    def format(self, record: logging.LogRecord) -> str:
        # ISO 8601 in UTC with milliseconds: sorts as text and needs no time-zone guessing.
        time = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "time": time.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: every logger to stdout as JSON lines at ``level``.

    uvicorn's loggers keep their names but lose their own handlers (so nothing is printed twice
    or in colour); its access log is off, since the request middleware writes a richer line.
    """
    number = LEVELS[level.lower()]
    own = {"level": number, "handlers": ["stdout"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "loggers": {name: dict(own) for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "service", "xent")},
        "root": {"level": logging.WARNING, "handlers": ["stdout"]},
    }
