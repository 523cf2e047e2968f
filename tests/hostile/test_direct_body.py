"""A large body read past uvicorn's receive channel (``service.server.direct_body``), on a real socket, under both
event loops uvicorn runs (uvloop and asyncio): the bytes are the body's, HTTP/1.1 goes on as before (keep-alive,
pipelining, ``Expect: 100-continue``), and a body the app stops waiting for, or a client that leaves, ends as it
did through ``receive``. Then the same through ``xent serve``: the answers, and the body counted in the metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from hostile_server import RawResponse, _parse
from live_server import free_port, running_xent
from prometheus_text import sample
from starlette.requests import ClientDisconnect

from service.api.transport.body import BODY_PLACER_KEY, DIRECT_BODY_KEY
from service.server import HeaderLimitedProtocol, direct_body

LARGE = bytes(np.random.default_rng(7).integers(0, 256, 3 << 20, dtype=np.uint8))  # 3 MiB of every byte value


class Recorder:
    """An ASGI app that reads each body straight into a buffer of its declared length (or, where it is not offered
    or refused, through ``receive``) and answers what it got; it records every exchange."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        length = int(headers.get(b"content-length", b"0"))
        direct = scope.get(DIRECT_BODY_KEY)
        record: dict[str, Any] = {"path": scope["path"], "offered": direct is not None, "direct": False}
        self.seen.append(record)
        body = bytearray()
        if scope["path"].startswith("/head"):  # the app looks at the body's first bytes before it reads it
            record["head"] = await direct.head(1024) if direct is not None else None
            if scope["path"] == "/head-then-receive":
                direct = None
        if scope["path"] == "/receive-first":  # the app takes some of the body through receive first
            message = await receive()
            body += message.get("body", b"")
        if direct is not None and length:
            view = memoryview(bytearray(length))
            arrived: list[int] = []
            try:
                if scope["path"] == "/give-up":  # the app stops waiting (a deadline)
                    await asyncio.wait_for(direct.read_into(view, arrived.append), 0.3)
                elif scope["path"] == "/small-reads":  # at most 4 KiB a read
                    record["direct"] = await direct.read_into(view, arrived.append, lambda: 4096)
                else:
                    record["direct"] = await direct.read_into(view, arrived.append)
            except TimeoutError:
                record["gave_up_after"] = arrived[-1] if arrived else 0
                await _answer(send, 408, b"gave up")
                return
            except ClientDisconnect:
                record["disconnected"] = True
                return
            record["arrived"] = arrived
            record["received"] = direct.received
            record["reads"] = direct.reads
            if scope["path"] == "/twice":  # one read a request: a second finds nothing to read
                record["again"] = await direct.read_into(memoryview(bytearray(length)), arrived.append)
            if record["direct"]:
                body = bytearray(view)
        if not record["direct"]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    record["disconnected"] = True
                    return
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        answer = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "direct": record["direct"]}
        await _answer(send, 200, json.dumps(answer).encode())


async def _answer(send: Any, status: int, content: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, Recorder]]:
    """The recorder on uvicorn with xent's protocol, on each event loop; yields its URL and the recorder."""
    recorder = Recorder()
    port = free_port()
    config = uvicorn.Config(
        recorder, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none",
        http=HeaderLimitedProtocol, loop=request.param,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited before it started"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _digest(body: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}


def _head(path: str, size: int, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: test", f"content-length: {size}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def _read_answers(sock: socket.socket, count: int) -> list[RawResponse]:
    """``count`` answers with a Content-Length, in order, off a connection that stays open."""
    received, answers = b"", []
    while len(answers) < count:
        _, found, rest = received.partition(b"\r\n\r\n")
        if found:
            response = _parse(received)
            size = int(response.headers["content-length"])
            if len(rest) >= size:
                answers.append(RawResponse(response.status, response.headers, rest[:size]))
                received = rest[size:]
                continue
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(answers)} answers"
        received += chunk
    return answers


def test_a_large_body_is_read_straight_into_the_apps_buffer(served: tuple[str, Recorder]) -> None:
    url, recorder = served
    with httpx.Client() as client:
        answer = client.post(f"{url}/direct", content=LARGE).json()
    assert answer == {**_digest(LARGE), "direct": True}
    record = recorder.seen[-1]
    assert record["offered"]
    assert record["direct"]
    arrived = record["arrived"]
    assert arrived == sorted(arrived)
    assert arrived[-1] == len(LARGE) == record["received"]


def test_reads_take_no_more_than_the_app_asks(served: tuple[str, Recorder]) -> None:
    url, recorder = served
    with httpx.Client() as client:
        answer = client.post(f"{url}/small-reads", content=LARGE).json()
    assert answer == {**_digest(LARGE), "direct": True}
    record = recorder.seen[-1]
    arrived = record["arrived"]  # the first: what the parser had delivered before the app asked
    assert record["reads"] >= -(-(len(LARGE) - arrived[0]) // 4096)  # none took more than 4 KiB
    assert np.diff(arrived).max() <= 256 * 1024 + 4096  # told every 256 KiB or so, not after every read


def test_a_body_is_read_past_receive_once(served: tuple[str, Recorder]) -> None:
    url, recorder = served
    with httpx.Client() as client:
        answer = client.post(f"{url}/twice", content=LARGE).json()
    assert answer == {**_digest(LARGE), "direct": True}
    assert recorder.seen[-1]["again"] is False


def test_keep_alive_goes_on_after_a_body_read_past_receive(served: tuple[str, Recorder]) -> None:
    url, recorder = served
    with httpx.Client() as client:
        for content in (LARGE, b"small", LARGE[:1_500_000], b"", LARGE):
            answer = client.post(f"{url}/direct", content=content).json()
            assert answer == {**_digest(content), "direct": bool(recorder.seen[-1]["direct"])}
    # The large ones were read past receive, on one connection (a small one too, if its bytes came after its head).
    assert [record["direct"] for record in recorder.seen[-5:]][::2] == [True, True, True]


def test_a_pipelined_request_behind_the_body_is_read_as_usual(served: tuple[str, Recorder]) -> None:
    url, _ = served
    small = b'{"a": 1}'
    with _connect(url) as sock:
        sock.sendall(_head("/direct", len(LARGE)) + LARGE + _head("/direct", len(small)) + small)
        first, second = _read_answers(sock, 2)
    assert json.loads(first.body) == {**_digest(LARGE), "direct": True}
    assert json.loads(second.body) == {**_digest(small), "direct": False}


def test_expect_100_continue_is_answered_before_the_body_is_sent(served: tuple[str, Recorder]) -> None:
    url, _ = served
    with _connect(url) as sock:
        sock.sendall(_head("/direct", len(LARGE), "expect: 100-continue"))
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(LARGE)
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer.body) == {**_digest(LARGE), "direct": True}


@pytest.mark.parametrize("path", ["/head", "/head-then-receive"])
def test_the_head_of_a_body_is_waited_for_when_the_head_of_the_request_came_alone(
    served: tuple[str, Recorder], path: str
) -> None:
    url, recorder = served
    with _connect(url) as sock:
        sock.sendall(_head(path, len(LARGE)))
        time.sleep(0.1)  # the app has the request's head, and nothing of the body
        sock.sendall(LARGE[:10])
        time.sleep(0.1)  # ten bytes are not the 1,024 it asked for: it goes on waiting
        sock.sendall(LARGE[10:])
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer.body) == {**_digest(LARGE), "direct": path == "/head"}
    assert recorder.seen[-1]["head"] == LARGE[:1024]


def test_the_head_of_a_short_body_is_all_of_it_and_expect_100_continue_is_answered(
    served: tuple[str, Recorder],
) -> None:
    url, recorder = served
    with _connect(url) as sock:
        sock.sendall(_head("/head", 100, "expect: 100-continue"))
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # head() answered it, as receive would
        sock.sendall(LARGE[:100])
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer.body)["size"] == 100
    assert recorder.seen[-1]["head"] == LARGE[:100]


def test_a_body_the_app_began_to_receive_is_received_to_its_end(served: tuple[str, Recorder]) -> None:
    url, recorder = served
    with httpx.Client() as client:
        answer = client.post(f"{url}/receive-first", content=LARGE).json()
    assert answer == {**_digest(LARGE), "direct": False}
    assert recorder.seen[-1]["offered"]


def test_a_chunked_body_is_not_offered(served: tuple[str, Recorder]) -> None:
    url, recorder = served
    with httpx.Client() as client:
        answer = client.post(f"{url}/direct", content=iter([LARGE[:1000], LARGE[1000:]])).json()
    assert answer == {**_digest(LARGE), "direct": False}
    assert not recorder.seen[-1]["offered"]


def test_a_body_the_app_stops_waiting_for_is_dropped_and_the_connection_goes_on(
    served: tuple[str, Recorder],
) -> None:
    url, recorder = served
    half = len(LARGE) // 2
    with _connect(url) as sock:
        sock.sendall(_head("/give-up", len(LARGE)) + LARGE[:half])
        (gave_up,) = _read_answers(sock, 1)  # after 0.3 s
        assert gave_up.status == 408
        assert 0 < recorder.seen[-1]["gave_up_after"] <= half
        # The rest of that body is read and dropped (never into the app's buffer), then the next request.
        sock.sendall(LARGE[half:] + _head("/direct", len(LARGE)) + LARGE)
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer.body) == {**_digest(LARGE), "direct": True}


@pytest.mark.parametrize("leave", ["close", "shut-write"])
def test_a_client_that_leaves_mid_body_is_a_disconnect(served: tuple[str, Recorder], leave: str) -> None:
    url, recorder = served
    before = len(recorder.seen)
    with _connect(url) as sock:
        sock.sendall(_head("/direct", len(LARGE)) + LARGE[: len(LARGE) // 3])
        time.sleep(0.2)
        if leave == "shut-write":
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1024) == b""  # closed without an answer: nobody would read it
    deadline = time.monotonic() + 10
    while len(recorder.seen) == before or not recorder.seen[-1].get("disconnected"):
        assert time.monotonic() < deadline, recorder.seen[before:]
        time.sleep(0.02)


def test_through_xent_the_answers_and_the_metrics_are_the_bodys() -> None:
    rows = [[None, *([-1.2345678901234567] * 499)] for _ in range(400)]
    body = json.dumps({"token_logprobs": rows}).encode()
    assert len(body) > 1 << 20
    with running_xent() as server, httpx.Client(base_url=server.url) as client:
        answers = [
            client.post("/v1/sequence-cross-entropy", content=body, headers={"content-type": "application/json"})
            for _ in range(3)
        ]
        small = client.post("/v1/sequence-cross-entropy", json={"token_logprobs": [[-1.0, -3.0]]})
        metrics = client.get("/metrics").text
    for answer in answers:
        assert answer.status_code == 200
        assert answer.json()["n_tokens"] == 400 * 499
        assert answer.json()["token"]["cross_entropy"] == pytest.approx(1.2345678901234567, rel=1e-15)
    assert small.json()["token"]["cross_entropy"] == 2.0
    counted = sample(metrics, "xent_http_request_body_bytes_sum", endpoint="/v1/sequence-cross-entropy")
    assert counted == 3 * len(body) + len(small.request.content)


# --- a body placed before the app is called (``BODY_PLACER_KEY`` in the lifespan state) ---


class _Placement:
    """A place of the test placer's: a fresh buffer; records what it hears."""

    def __init__(self, length: int) -> None:
        self.view = memoryview(bytearray(length))
        self.arrived_at: list[int] = []
        self.dropped = False

    def arrived(self, filled: int) -> None:
        self.arrived_at.append(filled)

    def read_bytes(self) -> int:
        return 16 << 10

    def drop(self) -> None:
        self.dropped = True


class _Placer:
    head_bytes = 1024
    min_bytes = 1 << 20

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.placements: list[_Placement] = []
        self.decline = False

    def __call__(self, scope: Any, length: int) -> Callable[[bytes], _Placement | None] | None:
        return None if scope["path"] == "/not-accepted" else lambda head: self._place(scope, length, head)

    def _place(self, scope: Any, length: int, head: bytes) -> _Placement | None:
        self.heads.append(head)
        if self.decline or scope["path"] == "/declined":
            return None
        self.placements.append(_Placement(length))
        return self.placements[-1]


class PlacingRecorder(Recorder):
    """The recorder, with a placer in its lifespan state: ``/placed`` takes the placed body over (``read_into`` its
    view), ``/ignore`` answers without the body, ``/direct`` reads into a buffer of its own (so the placed body comes
    through ``receive``)."""

    def __init__(self) -> None:
        super().__init__()
        self.placer = _Placer()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                scope["state"][BODY_PLACER_KEY] = self.placer
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        direct = scope.get(DIRECT_BODY_KEY)
        placement = direct.placement if direct is not None else None
        if scope["path"] not in ("/placed", "/ignore", "/not-accepted"):

            async def marking_send(message: Any) -> None:
                if message["type"] == "http.response.start":  # recorded before the client can have its answer
                    self.seen[-1]["placed"] = placement is not None
                await send(message)

            await super().__call__(scope, receive, marking_send)
            return
        record: dict[str, Any] = {"path": scope["path"], "placed": placement is not None, "direct": False}
        record["arrived_when_called"] = direct.received if direct is not None else 0
        self.seen.append(record)
        if scope["path"] in ("/ignore", "/not-accepted") or placement is None:
            await _answer(send, 404, b"not here")
            return
        arrived: list[int] = []
        try:
            record["direct"] = await direct.read_into(placement.view, arrived.append)
        except ClientDisconnect:
            record["disconnected"] = True
            return
        record["arrived"] = arrived
        body = bytes(placement.view)
        if not record["direct"]:  # (the exchange ended first): as any app, through receive
            message = await receive()
            if message["type"] == "http.disconnect":
                record["disconnected"] = True
                return
            body = message["body"]
        answer = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "direct": record["direct"]}
        await _answer(send, 200, json.dumps(answer).encode())


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def placing(request: pytest.FixtureRequest) -> Iterator[tuple[str, PlacingRecorder]]:
    recorder = PlacingRecorder()
    port = free_port()
    config = uvicorn.Config(
        recorder, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="none",
        http=HeaderLimitedProtocol, loop=request.param,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited before it started"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("together", [True, False], ids=["head-and-body-in-one-write", "head-first"])
def test_a_placed_body_is_in_when_the_app_is_called_and_the_connection_goes_on(
    placing: tuple[str, PlacingRecorder], together: bool
) -> None:
    url, recorder = placing
    small = b'{"a": 1}'
    with _connect(url) as sock:
        for _ in range(2):  # and again on the same connection
            head = _head("/placed", len(LARGE))
            if together:
                sock.sendall(head + LARGE)
            else:
                sock.sendall(head)
                time.sleep(0.05)
                sock.sendall(LARGE)
            (answer,) = _read_answers(sock, 1)
            assert json.loads(answer.body) == {**_digest(LARGE), "direct": True}
            record = recorder.seen[-1]
            assert record["placed"]
            assert record["arrived_when_called"] == len(LARGE)  # the app was called once the body was in
            assert recorder.placer.heads[-1] == LARGE[:1024]  # the placer saw the body's first bytes
            placement = recorder.placer.placements[-1]
            assert placement.arrived_at[-1] == len(LARGE)
            assert not placement.dropped
        sock.sendall(_head("/direct", len(small)) + small)  # a small one after it: not placed, read as usual
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer.body) == {**_digest(small), "direct": False}


def test_a_pipelined_request_behind_a_placed_body_is_read_as_usual(placing: tuple[str, PlacingRecorder]) -> None:
    url, _ = placing
    small = b'{"a": 1}'
    with _connect(url) as sock:
        sock.sendall(_head("/placed", len(LARGE)) + LARGE + _head("/direct", len(small)) + small)
        first, second = _read_answers(sock, 2)
    assert json.loads(first.body) == {**_digest(LARGE), "direct": True}
    assert json.loads(second.body) == {**_digest(small), "direct": False}


def test_a_placed_body_the_app_reads_with_receive_comes_whole(placing: tuple[str, PlacingRecorder]) -> None:
    url, recorder = placing
    with httpx.Client() as client:
        answer = client.post(f"{url}/direct", content=LARGE).json()
    assert answer == {**_digest(LARGE), "direct": False}  # its own buffer is not the place: receive, in one message
    assert recorder.seen[-1]["placed"]
    assert recorder.placer.placements[-1].dropped  # handed over as a copy, the place let go of


def test_a_placed_body_the_app_does_not_read_is_dropped_and_the_connection_goes_on(
    placing: tuple[str, PlacingRecorder],
) -> None:
    url, recorder = placing
    with httpx.Client() as client:
        ignored = client.post(f"{url}/ignore", content=LARGE)
        placement = recorder.placer.placements[-1]
        answer = client.post(f"{url}/placed", content=LARGE).json()
    assert ignored.status_code == 404
    assert placement.dropped
    assert answer == {**_digest(LARGE), "direct": True}


def test_a_body_the_placer_declines_is_the_apps_to_read(placing: tuple[str, PlacingRecorder]) -> None:
    url, recorder = placing
    with httpx.Client() as client:
        answer = client.post(f"{url}/declined", content=LARGE).json()
    assert answer == {**_digest(LARGE), "direct": True}  # read when the app asked, into its own buffer
    assert not recorder.seen[-1]["placed"]
    assert recorder.placer.heads[-1] == LARGE[:1024]


def test_a_client_that_waits_for_100_continue_is_not_kept_waiting_for_a_placement(
    placing: tuple[str, PlacingRecorder],
) -> None:
    url, recorder = placing
    placed_before = len(recorder.placer.placements)
    with _connect(url) as sock:
        sock.sendall(_head("/direct", len(LARGE), "expect: 100-continue"))
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(LARGE)
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer.body) == {**_digest(LARGE), "direct": True}
    assert len(recorder.placer.placements) == placed_before


def test_a_slow_body_is_taken_over_by_the_app_called_after_a_while(
    placing: tuple[str, PlacingRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, recorder = placing
    monkeypatch.setattr(direct_body, "WAIT_SECONDS", 0.2)
    half = len(LARGE) // 2
    with _connect(url) as sock:
        sock.sendall(_head("/placed", len(LARGE)) + LARGE[:half])
        time.sleep(0.5)  # the app is called meanwhile, with half the body in
        sock.sendall(LARGE[half:])
        (answer,) = _read_answers(sock, 1)
    assert json.loads(answer.body) == {**_digest(LARGE), "direct": True}
    record = recorder.seen[-1]
    assert record["placed"]
    assert 0 < record["arrived_when_called"] < len(LARGE)
    assert record["arrived"][0] == record["arrived_when_called"]  # taken over where it had got to
    assert record["arrived"][-1] == len(LARGE)


def test_a_client_that_leaves_mid_placed_body_is_a_disconnect(
    placing: tuple[str, PlacingRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, recorder = placing
    monkeypatch.setattr(direct_body, "WAIT_SECONDS", 5.0)
    before = len(recorder.seen)
    with _connect(url) as sock:
        sock.sendall(_head("/placed", len(LARGE)) + LARGE[: len(LARGE) // 3])
        time.sleep(0.2)
    deadline = time.monotonic() + 10  # the app is called at once: the connection is gone
    while len(recorder.seen) == before or not recorder.seen[-1].get("disconnected"):
        assert time.monotonic() < deadline, recorder.seen[before:]
        time.sleep(0.02)
    assert recorder.placer.placements[-1].dropped


def test_a_body_the_placer_does_not_accept_leaves_the_app_to_be_called_at_once(
    placing: tuple[str, PlacingRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, recorder = placing
    monkeypatch.setattr(direct_body, "WAIT_SECONDS", 5.0)
    heads_before = len(recorder.placer.heads)
    with _connect(url) as sock:
        started = time.monotonic()
        sock.sendall(_head("/not-accepted", len(LARGE)))  # and none of the body: the app answers from the head
        (answer,) = _read_answers(sock, 1)
        waited = time.monotonic() - started
    assert answer.status == 404
    assert waited < 2.0  # not the 5 s a body being placed may wait for
    assert not recorder.seen[-1]["placed"]
    assert len(recorder.placer.heads) == heads_before  # never asked for a place
