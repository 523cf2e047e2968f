"""A real ``xent serve`` on a free loopback port, and a raw-socket HTTP/1.1 client for it.

The bad-input catalogue and the schema fuzz both talk to a real server: truncated bodies,
Content-Length lies and stalled uploads only exist on a real socket, and the fuzz must see
what a client sees (uvicorn's framing, headers and content types), not only the ASGI app.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from live_server import running_xent


@contextlib.contextmanager
def running_server(env: dict[str, str] | None = None, *, log: Path | None = None) -> Iterator[str]:
    """``xent serve`` with ``XENT_*`` settings from ``env`` (no API keys), until the block ends; yields its URL."""
    with running_xent(env=env, log=log) as server:
        yield server.url


@dataclass(frozen=True)
class RawResponse:
    """An HTTP/1.1 answer read off a socket."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        """The body as JSON."""
        return json.loads(self.body)


def raw_exchange(
    url: str, head: bytes, parts: list[bytes], *, pause: float = 0.0, timeout: float = 20.0
) -> RawResponse:
    """Send ``head`` (request line and headers) then each of ``parts``, pausing ``pause`` s after each;
    read one answer. The server may answer before every part is sent (a 413 on the headers alone):
    a send that fails because it closed the connection ends the sending, not the exchange."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        for part in parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
                if _complete(received):
                    break
    return _parse(received)


def _complete(data: bytes) -> bool:
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _parse(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), f"not an HTTP answer: {data[:200]!r}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return RawResponse(int(lines[0].split()[1]), headers, body[:length])
