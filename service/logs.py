"""Logs as JSON lines on stdout: one object per record, the same shape for uvicorn's messages and ours.

``xent serve`` hands :func:`log_config` to uvicorn, which applies it in the supervisor and in
every worker. This module imports neither the web stack nor prometheus_client, so the CLI can
use it before the workers' environment is settled.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import orjson

#: uvicorn's extra level below debug; ``XENT_LOG_LEVEL=trace`` reaches it.
TRACE = 5
LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}
LEVELS |= {"debug": logging.DEBUG, "trace": TRACE}

#: The logger of the one-line-per-request records.
REQUEST_LOGGER = "xent.requests"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}`` on one line; ``extra={"fields": {...}}`` adds keys.

    Only what a record carries in ``fields`` is added, never its arguments' reprs, so a log
    call cannot leak a request payload by accident. Every request writes a line, so this is
    kept cheap: orjson (compact separators), and the time's date part reused within a second.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return dumps(line)


#: (second, "YYYY-MM-DDTHH:MM:SS") of the last line: one tuple, replaced whole, so threads can share it.
_second: tuple[int, str] = (-1, "")


def utc_time(timestamp: float) -> str:
    """``timestamp`` as ISO 8601 in UTC with milliseconds and a ``Z``: sorts as text, needs no time-zone guessing.

    The same text as ``datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")``
    (with ``Z`` for ``+00:00``), which rounds to the microsecond, half to even, then truncates.
    """
    global _second
    fraction, whole = math.modf(timestamp)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    second = int(whole)
    cached, text = _second
    if second != cached:
        t = time.gmtime(second)
        text = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        _second = (second, text)
    return f"{text}.{micros // 1000:03d}Z"


def _fallback(value: Any) -> Any:
    """What orjson cannot write itself: a float subclass (NumPy's) as its number, anything else as ``str``."""
    return float(value) if isinstance(value, float) else str(value)


# Dataclasses and datetimes go through _fallback (str), as they did with json.dumps(default=str).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps(line: dict[str, Any]) -> str:
    """``line`` as one line of JSON text; json's, for what orjson refuses (non-string keys, huge integers)."""
    try:
        return orjson.dumps(line, default=_fallback, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
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
