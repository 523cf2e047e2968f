"""The client's settings (where the service is, how to authenticate, retry, and when to send NPZ) and the
progress bar of chunked scoring."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from service.client.retry import Retry
from service.client.wire import NPZ_MIN_VALUES

#: Where the client looks when no ``base_url`` is given and ``XENT_URL`` is unset: ``xent serve``'s default.
DEFAULT_URL = "http://127.0.0.1:8000"

#: zstd or nothing, not httpx's default "gzip, deflate, zstd": a large answer is cheap to zstd and to read
#: back, while gzipping it costs the server more than the answer costs to send on a fast link, so a client
#: that offers gzip pays for it whenever a server or proxy on the way compresses (benchmarks/RESULTS.md).
ACCEPT_ENCODING = "zstd"


@dataclass(frozen=True)
class ClientConfig:
    """Resolved client settings (arguments first, then ``XENT_URL`` / ``XENT_API_KEY``)."""

    base_url: str
    headers: dict[str, str]
    retry: Retry
    npz_min_values: int

    @classmethod
    def build(
        cls,
        base_url: str | None,
        api_key: str | None,
        timeout: float,
        retries: int,
        backoff: float,
        npz_min_values: int | None,
    ) -> ClientConfig:
        """The settings for these arguments and the environment."""
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        url = base_url or os.environ.get("XENT_URL") or DEFAULT_URL
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(f"{'base_url' if base_url else 'XENT_URL'}: {problem}")
        url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("XENT_API_KEY")
        headers = {"User-Agent": f"xent-client/{_version()}", "Accept-Encoding": ACCEPT_ENCODING}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return cls(url, headers, Retry(attempts=retries, backoff=backoff), npz_min_values or NPZ_MIN_VALUES)


def url_problem(url: str) -> str | None:
    """What keeps ``url`` from being a service's address (None: nothing), with a hint: it needs a scheme and a host.

    >>> print(url_problem("localhost:8000"))
    "localhost:8000" has no scheme; did you mean http://localhost:8000?
    >>> url_problem("http://localhost:8000") is None
    True
    """
    if "://" not in url:
        # urlsplit reads "localhost:8000" as the scheme "localhost": say what was meant instead.
        return f'"{url}" has no scheme; did you mean http://{url}?'
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return f'"{url}" is not an http:// or https:// address'
    if not parts.hostname:
        return f'"{url}" has no host; for example http://127.0.0.1:8000'
    return None


def _version() -> str:
    from service import __version__

    return __version__


class Progress(Protocol):
    """What scoring needs of a progress bar."""

    def update(self, n: int) -> object: ...


class _Silent:
    def update(self, n: int) -> None:
        """Nothing to show."""


@contextmanager
def progress_bar(total: int, show: bool | None) -> Iterator[Progress]:
    """A tqdm bar of rows done on stderr: when ``show``, or when ``show`` is None and stderr is a terminal."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        yield _Silent()
        return
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints (types-tqdm would)

    with tqdm(total=total, unit="rows", unit_scale=True, desc="xent", file=sys.stderr) as bar:
        yield bar
