"""Request heads against a real ``xent serve``: their size, their number of fields, and the time to send them.

XENT_MAX_HEADER_BYTES and XENT_MAX_HEADERS are answered 431 (RFC 6585) as application/problem+json,
then the connection is closed (lingering: what the client still sends is dropped, up to 4 MiB or 2 s),
and nothing past the limit is parsed or kept: a 256 MiB header costs the server no memory.
XENT_HEADER_TIMEOUT_SECONDS (1 s here) closes a connection whose request head has not ended that long
after it opened, or after the previous response, however fast bytes trickle in.
(service/server/protocol.py; issue 12, item 4.)
"""

from __future__ import annotations

import json
import pickle
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hostile_server import RawResponse, _parse
from live_server import LiveServer, running_xent

from service.server import HeaderLimitedProtocol, HeaderLimits, http_protocol
from service.settings import Settings

HEADER_TIMEOUT = 1.0
PROBLEM = "application/problem+json"
TWO_ROWS = b'{"labels": [1, 0], "predictions": [[0.228, 0.619, 0.153], [0.5, 0.25, 0.25]]}'
SIZE_DETAIL = (
    "The request's head (request line and header fields) is longer than 16384 bytes, "
    "the limit set by XENT_MAX_HEADER_BYTES."
)
FIELDS_DETAIL = "The request has more than 100 header fields, the limit set by XENT_MAX_HEADERS."


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    """One real server at the default header limits, with a 1 s header deadline."""
    with running_xent(env={"XENT_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}) as live:
        yield live


def _connect(server: LiveServer, timeout: float = 10.0) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def _read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset after its answer ends it too)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _read_one(sock: socket.socket) -> RawResponse:
    """One answer with a Content-Length, off a connection that stays open."""
    received = b""
    while True:
        _, found, body = received.partition(b"\r\n\r\n")
        if found:
            response = _parse(received)
            if len(body) >= int(response.headers["content-length"]):
                return response
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk


def _exchange(server: LiveServer, request: bytes) -> tuple[RawResponse, bytes]:
    """Send ``request``, read until the server closes; the first answer, and all the bytes."""
    with _connect(server) as sock:
        sock.sendall(request)
        received = _read_to_close(sock)
    return _parse(received), received


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"", every: float = 0.05) -> float:
    """Seconds until the server closes ``sock`` while we send ``trickle`` a byte at a time; fails after ``seconds``."""
    start = time.monotonic()
    position = 0
    while time.monotonic() - start < seconds:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            assert data == b"", f"the server answered {data!r} instead of closing"
            return time.monotonic() - start
        if position < len(trickle):
            try:
                sock.send(trickle[position : position + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
            position += 1
    raise AssertionError(f"the connection was still open after {seconds} s")


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of process ``pid``, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _assert_431(response: RawResponse, detail: str) -> None:
    assert response.status == 431, response.body
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["connection"] == "close"
    assert response.json() == {
        "type": "urn:xent:problem:headers-too-large",
        "title": "Request header fields too large",
        "status": 431,
        "detail": detail,
    }


def _detail(response: RawResponse) -> str:
    problem = response.json()
    assert isinstance(problem, dict)
    detail: str = problem["detail"]
    return detail


def _get(*lines: bytes) -> bytes:
    return b"GET /healthz HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


# --- size ---


def test_a_64_kib_header_is_a_431_and_the_connection_is_closed(server: LiveServer) -> None:
    response, received = _exchange(server, _get(b"Host: x", b"X-Big: " + b"a" * 64 * 1024))

    _assert_431(response, SIZE_DETAIL)
    assert received.count(b"HTTP/1.1") == 1


def test_a_head_of_exactly_the_limit_is_read_and_one_byte_more_is_a_431(server: LiveServer) -> None:
    def padded(size: int) -> bytes:
        request = _get(b"Host: x", b"Connection: close", b"X-Pad: ")
        return request.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(request)))

    at_limit, _ = _exchange(server, padded(16384))
    over, _ = _exchange(server, padded(16385))

    assert at_limit.status == 200, at_limit.body
    _assert_431(over, SIZE_DETAIL)


def test_a_long_url_counts_towards_the_limit(server: LiveServer) -> None:
    response, _ = _exchange(server, b"GET /healthz?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")

    _assert_431(response, SIZE_DETAIL)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_a_256_mib_header_is_cut_after_16_kib_without_the_server_growing(server: LiveServer) -> None:
    before = _memory_kib(server.process.pid)
    megabyte = b"a" * (1 << 20)
    sent = 0
    start = time.monotonic()
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(256):
                sock.sendall(megabyte)
                sent += len(megabyte)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = _read_to_close(sock)
    elapsed = time.monotonic() - start
    after = _memory_kib(server.process.pid)

    _assert_431(_parse(received), SIZE_DETAIL)
    # The server stopped reading after 16 KiB: what got through is what the kernel's buffers held.
    assert sent < 64 * (1 << 20), f"the server read {sent} bytes of the header"
    assert elapsed < 5, elapsed
    assert after["VmHWM"] - before["VmHWM"] < 50 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 50 * 1024, (before, after)
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


# --- number of fields ---


def _fields(count: int) -> list[bytes]:
    """``count`` header fields of ordinary size, Host and Connection among them."""
    return [b"Host: x", b"Connection: close", *(b"X-Field-%d: value-%d" % (i, i) for i in range(count - 2))]


def test_100_header_fields_are_read(server: LiveServer) -> None:
    response, _ = _exchange(server, _get(*_fields(100)))

    assert response.status == 200, response.body


def test_101_header_fields_are_a_431(server: LiveServer) -> None:
    response, _ = _exchange(server, _get(*_fields(101)))

    _assert_431(response, FIELDS_DETAIL)


def test_100000_header_fields_are_a_431_at_once(server: LiveServer) -> None:
    # The server refuses at the 101st field and drops the rest of the 2.7 MB as it comes (a lingering close):
    # the client sends it all without a reset, and reads the 431 (closed at once, a reset could discard it).
    start = time.monotonic()
    response, _ = _exchange(server, _get(*_fields(100_000)))

    _assert_431(response, FIELDS_DETAIL)
    assert time.monotonic() - start < 5


# --- what is not a head ---


def test_a_request_with_httpx_default_headers_is_answered(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/healthz", timeout=10)

    assert response.status_code == 200


def test_a_body_far_over_the_header_limit_is_not_counted_as_head(server: LiveServer) -> None:
    rows = 5000
    body = json.dumps({"labels": [0] * rows, "predictions": [[0.5, 0.25, 0.25]] * rows}).encode()
    assert len(body) > 4 * 16384

    response = httpx.post(
        f"{server.url}/v1/cross-entropy", content=body, headers={"content-type": "application/json"}, timeout=30
    )

    assert response.status_code == 200, response.text


def test_kept_alive_requests_each_get_their_own_head_allowance(server: LiveServer) -> None:
    padding = b"X-Pad: " + b"p" * 12000  # two of these would be over 16 KiB together, each is under
    with _connect(server) as sock:
        for _ in range(3):
            sock.sendall(_get(b"Host: x", padding))
            assert _read_one(sock).status == 200


def test_a_pipelined_oversized_head_is_refused_after_the_answer_before_it(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_get(b"Host: x") + _get(b"Host: x", b"X-Big: " + b"a" * 20000))
        received = _read_to_close(sock)

    first, _, rest = received.partition(b"HTTP/1.1 431")
    assert _parse(first).status == 200
    _assert_431(_parse(b"HTTP/1.1 431" + rest), SIZE_DETAIL)


def test_bytes_httptools_rejects_are_a_400_problem(server: LiveServer) -> None:
    response, _ = _exchange(server, _get(b"Host: x", b"Bad Name: value"))

    assert response.status == 400
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert isinstance(problem, dict)
    assert problem["type"] == "urn:xent:problem:malformed-request"
    assert _detail(response).startswith("The request is not valid HTTP/1.1 (")


def test_the_refusals_are_the_examples_the_openapi_document_shows(server: LiveServer) -> None:
    too_large, _ = _exchange(server, _get(b"Host: x", b"X-Big: " + b"a" * 17_000))
    malformed, _ = _exchange(server, _get(b"Host: x", b"Bad Header: x"))

    shown = openapi_examples("/healthz", "get")
    assert (too_large.status, too_large.json()) == (431, shown["431"]["headers-too-large"])
    assert (malformed.status, malformed.json()) == (400, shown["400"]["malformed-request"])


def openapi_examples(path: str, method: str) -> dict[str, dict[str, object]]:
    """The problem examples the committed OpenAPI document shows for an operation, by status and kind."""
    document = json.loads((Path(__file__).parents[2] / "openapi" / "openapi.json").read_text())
    responses = document["paths"][path][method]["responses"]
    return {
        status: {name: example["value"] for name, example in r["content"][PROBLEM]["examples"].items()}
        for status, r in responses.items()
        if PROBLEM in r.get("content", {})
    }


# --- the head deadline ---


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server: LiveServer) -> None:
    with _connect(server) as sock:
        elapsed = _closed_within(sock, 10)

    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 2


def test_a_head_trickling_in_is_closed_at_the_deadline_though_bytes_keep_arriving(server: LiveServer) -> None:
    trickle = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000  # 20 bytes a second, for a minute
    with _connect(server) as sock:
        elapsed = _closed_within(sock, 10, trickle)

    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 2


def test_a_kept_alive_connection_gets_the_deadline_anew_after_each_answer(server: LiveServer) -> None:
    with _connect(server) as sock:
        start = time.monotonic()
        for _ in range(4):  # 4 × 0.6 s: longer than one deadline in all, shorter than one each time
            time.sleep(HEADER_TIMEOUT * 0.6)
            sock.sendall(_get(b"Host: x"))
            assert _read_one(sock).status == 200
        assert time.monotonic() - start > 2 * HEADER_TIMEOUT
        # After the last answer, a head trickled in is cut one deadline later (uvicorn's 5 s keep-alive
        # timeout, which each byte resets, would never close it).
        elapsed = _closed_within(sock, 10, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000)

    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 2


# --- configuration ---


def test_the_limits_come_from_the_settings_and_survive_pickling() -> None:
    settings = Settings(max_header_bytes=4096, max_headers=7, header_timeout_seconds=2.5)

    factory = pickle.loads(pickle.dumps(http_protocol(settings)))

    assert factory.func is HeaderLimitedProtocol
    assert factory.keywords == {"limits": HeaderLimits(4096, 7, 2.5)}


def test_the_protocol_defaults_are_the_settings_defaults() -> None:
    assert HeaderLimits.from_settings(Settings()) == HeaderLimits()


def test_every_worker_of_several_applies_the_configured_limits() -> None:
    env = {"XENT_MAX_HEADERS": "5", "XENT_MAX_HEADER_BYTES": "2048", "XENT_HEADER_TIMEOUT_SECONDS": "1"}
    with running_xent("--workers", "2", env=env) as live:
        for _ in range(6):  # fresh connections, spread over both workers
            too_many, _ = _exchange(live, _get(*_fields(6)))
            assert too_many.status == 431
            assert _detail(too_many).endswith("more than 5 header fields, the limit set by XENT_MAX_HEADERS.")
            too_long, _ = _exchange(live, _get(b"Host: x", b"X-Big: " + b"a" * 3000))
            assert too_long.status == 431
            assert "longer than 2048 bytes" in _detail(too_long)
            fine, _ = _exchange(live, _get(*_fields(5)))
            assert fine.status == 200
        with _connect(live) as sock:
            assert _closed_within(sock, 10) < HEADER_TIMEOUT + 2


def test_a_refused_connection_drops_what_still_comes_then_closes_after_the_linger() -> None:
    from service.server.protocol import LINGER_SECONDS

    with running_xent() as live, _connect(live, timeout=5) as sock:
        sock.sendall(_get(b"Host: x", b"X-Big: " + b"a" * 64 * 1024))
        received = b""
        while chunk := sock.recv(65536):  # the 431, then the server's FIN (its write side shut)
            received += chunk
        _assert_431(_parse(received), SIZE_DETAIL)
        # Lingering: more bytes are read and dropped, nothing answers them, and nothing is reset.
        sock.sendall(b"x" * 1024)
        time.sleep(0.2)
        sock.sendall(b"x" * 1024)
        assert sock.recv(1) == b""
        # After the linger the connection is closed for good: what comes then is reset.
        time.sleep(LINGER_SECONDS + 1.0)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            _send_until_refused(sock)


def _send_until_refused(sock: socket.socket, tries: int = 20) -> None:
    """Send a little at a time: a closed peer answers the first with a reset, which the next send (or the one
    after) raises."""
    for _ in range(tries):
        sock.sendall(b"x" * 1024)
        time.sleep(0.05)
