"""The client's settings (where the service is, how to authenticate, retry, and when to send NPZ) and the
progress bar of chunked scoring."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from service.client.retry import Retry
from service.client.wire import NPZ_MIN_VALUES

#: Where the client looks when no ``base_url`` is given and ``XENT_URL`` is unset: ``xent serve``'s default.
DEFAULT_URL = "http://127.0.0.1:8000"


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
        url = (base_url or os.environ.get("XENT_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("XENT_API_KEY")
        headers = {"User-Agent": f"xent-client/{_version()}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return cls(url, headers, Retry(attempts=retries, backoff=backoff), npz_min_values or NPZ_MIN_VALUES)


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
