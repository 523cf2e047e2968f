"""A real ``xent serve`` on a free loopback port, and a raw-socket HTTP/1.1 client for it.

The bad-input catalogue and the schema fuzz both talk to a real server: truncated bodies,
Content-Length lies and stalled uploads only exist on a real socket, and the fuzz must see
what a client sees (uvicorn's framing, headers and content types), not only the ASGI app.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(env: dict[str, str] | None = None, *, log: Path | None = None) -> Iterator[str]:
    """``xent serve`` with ``XENT_*`` settings from ``env`` (no API keys), until the block ends; yields its URL."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XENT_")}
    environment |= {"XENT_HOST": "127.0.0.1", "XENT_PORT": str(port), "XENT_LOG_LEVEL": "warning", **(env or {})}
    command = [sys.executable, "-c", "from service.cli import main; raise SystemExit(main())", "serve"]
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(command, env=environment, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - only on a hung server
                process.kill()
                process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"xent serve exited with {process.returncode}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"xent serve at {url} was not ready within {seconds} s")


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
