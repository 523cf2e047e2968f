"""JSON bodies are screened before they are parsed (issue 12 items 5 and 6).

The first unknown key is refused in time linear in the body, however many follow (100,000
keys took 59 s of CPU on the fast path, one dictionary lookup per key scanning the object);
a batch past the limits is refused before a parser builds an object per number (a 63 MiB body
the fast path declined took 22.8 times its size before its 413). Measured in process with
``time.process_time`` and against a real server: wall time, and the worker's peak RSS (VmHWM).
"""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live_server import running_xent

from service.api.problems import HttpProblem
from service.api.schemas import CrossEntropyRequest
from service.api.transport import Limits, json_codec
from service.api.transport.body import Body
from service.settings import Settings

CE = "/v1/cross-entropy"
JSON_HEADERS = {"content-type": "application/json"}
FIELDS = ", ".join(CrossEntropyRequest.model_fields)
UNKNOWN_K0 = {
    "type": "urn:xent:problem:invalid-input",
    "title": "Invalid input",
    "status": 422,
    "detail": f"k0: unknown field 'k0' (fields: {FIELDS})",
    "errors": [{"loc": ["body", "k0"], "msg": f"unknown field 'k0' (fields: {FIELDS})", "type": "extra_forbidden"}],
}
#: 1,500,000 rows × 10 classes: 63 MiB (66 MB) of JSON, 15,000,000 cells against the default 8,000,000.
ROWS = 1_500_000
OVER_CELLS = {
    "type": "urn:xent:problem:too-large",
    "title": "Payload too large",
    "status": 413,
    "detail": "the batch has 15,000,000 rows × classes; the limit is 8,000,000 (XENT_MAX_CELLS)",
}


def many_unknown_keys(n: int = 100_000) -> bytes:
    """A valid request but for ``n`` unknown keys before its fields (1.48 MB for 100,000)."""
    keys = b",".join(b'"k%d":%d' % (i, i) for i in range(n))
    return b"{" + keys + b',"labels":[1],"predictions":[[0.5,0.5]]}'


def over_the_cell_limit(twist: str) -> bytes:
    """63 MiB of 1,500,000 × 10 probabilities with what makes the fast path give way: ``twist``."""
    row = b"[" + b",".join([b"0.1"] * 10) + b"]"
    last = b"[NaN" + b",0.1" * 9 + b"]" if twist == "NaN token" else row
    extra = {
        "duplicate key": b',"unit":"nats","unit":"bits"',
        "backslash escape": b',"unit":"n\\u0061ts"',
        "NaN token": b"",
    }[twist]
    labels = b",".join([b"1"] * ROWS)
    rows = b",".join([row] * (ROWS - 1) + [last])
    return b'{"labels":[' + labels + b'],"predictions":[' + rows + b"]" + extra + b"}"


@pytest.mark.parametrize("fast_json_min_bytes", [0, 10**12], ids=["fast path", "reference path"])
def test_a_hundred_thousand_unknown_keys_cost_well_under_a_second_of_cpu(fast_json_min_bytes: int) -> None:
    body = many_unknown_keys()
    limits = Limits.from_settings(Settings())
    started = time.process_time()
    with pytest.raises(HttpProblem) as refused:
        json_codec.decode(CrossEntropyRequest, Body("json", body), {}, limits, fast_json_min_bytes=fast_json_min_bytes)
    cpu = time.process_time() - started
    assert refused.value.kind.body(refused.value.detail, refused.value.errors) == UNKNOWN_K0
    assert cpu < 1.0, f"{cpu:.2f} s of CPU"


def test_a_hundred_thousand_unknown_keys_against_a_real_server_one_and_four_at_once() -> None:
    body = many_unknown_keys()
    with running_xent() as server, httpx.Client(base_url=server.url, timeout=120) as client:

        def post() -> tuple[httpx.Response, float]:
            started = time.monotonic()
            response = client.post(CE, content=body, headers=JSON_HEADERS)
            return response, time.monotonic() - started

        response, alone = post()
        assert response.status_code == 422, response.text
        assert response.json() == UNKNOWN_K0
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(), range(4)))
        together = time.monotonic() - started
    assert [answer.json() for answer, _ in answers] == [UNKNOWN_K0] * 4
    # Under a second each (the old code: 59 s of CPU for one); the slack is for a loaded test machine.
    assert alone < 2.0, f"one body took {alone:.2f} s"
    assert together < 4.0, f"four bodies at once took {together:.2f} s"


def _status_bytes(pid: int, field: str) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("twist", ["duplicate key", "backslash escape", "NaN token"])
def test_a_batch_over_the_cell_limit_is_refused_before_its_numbers_are_parsed(twist: str) -> None:
    body = over_the_cell_limit(twist)
    assert 62 * 2**20 < len(body) < 64 * 2**20
    # A memory budget that admits the request: this test measures what decoding it costs.
    with running_xent(env={"XENT_MEMORY_BUDGET_BYTES": str(8 * 2**30)}) as server:
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
        worker = int(children[0]) if children else server.process.pid
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert client.post(CE, content=b'{"labels":[1],"predictions":[[0.5,0.5]]}', headers=JSON_HEADERS)
            before = _status_bytes(worker, "VmRSS:")
            Path(f"/proc/{worker}/clear_refs").write_text("5")  # VmHWM := VmRSS
            response = client.post(CE, content=body, headers=JSON_HEADERS)
            growth = _status_bytes(worker, "VmHWM:") - before
    assert response.status_code == 413, response.text[:300]
    assert response.json() == OVER_CELLS
    # The body itself (held while it is read) and the scans of its text: the old code took 22.8 times its size.
    assert growth < 4 * len(body), f"peak RSS grew by {growth / len(body):.1f} times the body"


def test_an_array_beside_the_predictions_past_the_cell_limit_is_refused_before_it_is_parsed() -> None:
    limits = Limits.from_settings(Settings(max_cells=1000))
    body = b'{"labels":[' + b",".join([b"1"] * 2000) + b'],"predictions":[[0.5,0.5]]}'
    for fast_json_min_bytes in (0, 10**12):
        with pytest.raises(HttpProblem) as refused:
            json_codec.decode(
                CrossEntropyRequest, Body("json", body), {}, limits, fast_json_min_bytes=fast_json_min_bytes
            )
        assert refused.value.kind.status == 413
        assert refused.value.detail == "labels has 2,000 values; the limit is 1,000 (XENT_MAX_CELLS)"
