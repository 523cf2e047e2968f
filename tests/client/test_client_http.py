"""The Python client against the real app: answers, transports, options, errors, retries, configuration."""

import io
import math
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from client_servers import Flaky, assert_same_scores, serve_in_thread
from in_process import asgi_transport

from service.api.app import create_app
from service.cli.local import score_locally
from service.client import AsyncClient, Client, InvalidInputError, ProblemError, TransportError
from service.settings import Settings

REFERENCE_CE = 0.47965000629754095
NPZ_HEADERS = {"Content-Type": "application/x-npz", "Accept": "application/json"}


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The real app on a real uvicorn server, for this module's tests."""
    yield from serve_in_thread(create_app(Settings()))


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, Flaky]]:
    """A real uvicorn server whose first two scoring requests get 503."""
    flaky = Flaky(create_app(Settings()), failures=2)
    for url in serve_in_thread(flaky):
        yield url, flaky


@pytest.fixture
async def recorder() -> AsyncIterator[Flaky]:
    """The real app behind a recorder of request headers (no failures), its lifespan entered."""
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        yield Flaky(app, failures=0)


def _client(app: Any, **kwargs: Any) -> AsyncClient:
    return AsyncClient("http://test", transport=asgi_transport(app), **kwargs)


def test_sync_client_scores_the_reference_example_on_a_real_server(server_url: str) -> None:
    with Client(server_url) as xent:
        scores = xent.cross_entropy([1], [[0.228, 0.619, 0.153]])
    assert scores.n == scores.n_scored == 1
    assert scores.unit == "nats"
    assert scores.mean.cross_entropy == REFERENCE_CE
    assert scores.mean.perplexity == pytest.approx(1.615508885298869, rel=1e-15)
    assert scores.mean.accuracy == 1.0
    assert scores.sum.entropy == 0.0
    assert scores.per_sample is not None
    assert scores.per_sample.cross_entropy.dtype == np.float64
    assert scores.per_sample.cross_entropy.tolist() == [REFERENCE_CE]
    assert scores.per_sample.ignored.tolist() == [False]
    assert [w.code for w in scores.warnings] == ["STDERR_UNDEFINED"]  # one row: no standard error
    assert scores.stderr is not None
    assert scores.stderr.cross_entropy is None
    assert scores.settings["prediction_type"] == "probabilities"


@pytest.mark.anyio
@pytest.mark.parametrize("epsilon", ["auto", 0.0])
async def test_json_and_npz_give_the_same_scores_as_the_core(recorder: Flaky, epsilon: Any) -> None:
    rng = np.random.default_rng(3)
    predictions = rng.dirichlet(np.ones(4), 300)
    predictions[5] = [0.0, 1.0, 0.0, 0.0]  # true class 0 below: clipped, or +inf with epsilon 0
    labels = rng.integers(0, 4, 300)
    labels[5], labels[7], labels[100] = 0, -100, -100
    options: dict[str, Any] = {"ignore_index": -100, "unit": "bits", "epsilon": epsilon}
    async with _client(recorder) as xent:
        as_json = await xent.cross_entropy(labels, predictions, transport="json", **options)
        as_npz = await xent.cross_entropy(labels, predictions, transport="npz", **options)
    assert [h["content-type"] for h in recorder.headers] == ["application/json", "application/x-npz"]
    local = score_locally(labels, predictions, binary=False, options=options)
    assert_same_scores(as_json, local)
    assert_same_scores(as_npz, local)
    assert as_json.per_sample is not None
    assert np.isnan(as_json.per_sample.cross_entropy[[7, 100]]).all()
    assert np.flatnonzero(as_json.per_sample.ignored).tolist() == [7, 100]
    assert as_json.n_scored == 298
    codes = [w.code for w in as_json.warnings]
    if epsilon == "auto":
        assert codes == ["CLIPPED"]
    else:
        assert codes == ["NON_FINITE"]
        assert as_json.per_sample.cross_entropy[5] == math.inf  # null on a scored row is +inf
        assert as_json.mean.cross_entropy is None


@pytest.mark.anyio
async def test_auto_transport_sends_json_below_the_threshold_and_npz_from_it(recorder: Flaky) -> None:
    async with _client(recorder, npz_min_values=30) as xent:
        await xent.cross_entropy([0] * 9, [[0.5, 0.5]] * 9)  # 18 values
        await xent.cross_entropy([0] * 15, [[0.5, 0.5]] * 15)  # 30 values
    assert [h["content-type"] for h in recorder.headers] == ["application/json", "application/x-npz"]
    assert [h["accept"] for h in recorder.headers] == ["application/json", "application/x-npz"]


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["json", "npz"])
async def test_every_multiclass_option_reaches_the_service(recorder: Flaky, transport: Any) -> None:
    options: dict[str, Any] = {
        "prediction_type": "logits",
        "classes": ["cat", "dog", "eel"],
        "label_smoothing": 0.1,
        "class_weights": [1.0, 2.0, 0.5],
        "sample_weights": [1.0, 0.0, 3.0, 2.0],
        "unit": "hartleys",
        "per_sample": False,
    }
    labels = ["dog", "cat", "eel", "eel"]
    logits = [[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 1.0, 1.0]]
    async with _client(recorder) as xent:
        scores = await xent.cross_entropy(labels, logits, transport=transport, **options)
    assert_same_scores(scores, score_locally(labels, logits, binary=False, options=options))
    assert scores.classes == ("cat", "dog", "eel")
    assert scores.per_sample is None
    assert scores.settings["class_weights"] == [1.0, 2.0, 0.5]


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["json", "npz"])
@pytest.mark.parametrize("pos_weight", [None, 2.0, [1.0, 3.0]])
async def test_binary_options_reach_the_service(recorder: Flaky, transport: Any, pos_weight: Any) -> None:
    labels = [[0, 1], [1, 1], [0, 0]]
    predictions = [[0.1, 0.8], [0.6, 0.3], [0.2, 0.4]]
    options: dict[str, Any] = {"pos_weight": pos_weight, "label_smoothing": 0.05, "sample_weights": [1, 2, 3]}
    async with _client(recorder) as xent:
        scores = await xent.binary_cross_entropy(labels, predictions, transport=transport, **options)
    assert_same_scores(scores, score_locally(labels, predictions, binary=True, options=options))


def test_torch_tensors_are_accepted(server_url: str) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed: tensor input is not tested here")
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 0])
    with Client(server_url) as xent:
        scores = xent.cross_entropy(labels, logits, prediction_type="logits")
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert scores.mean.cross_entropy == pytest.approx(expected, rel=1e-12)


def test_pandas_objects_are_accepted(server_url: str) -> None:
    pandas = pytest.importorskip("pandas", reason="pandas is not installed: DataFrame input is not tested here")
    frame = pandas.DataFrame({"A": [0.228, 0.5], "B": [0.619, 0.25], "C": [0.153, 0.25]})
    labels = pandas.Series(["B", "A"])
    with Client(server_url) as xent:
        scores = xent.cross_entropy(labels, frame, classes=["A", "B", "C"])
    assert scores.per_sample is not None
    assert scores.per_sample.cross_entropy.tolist() == pytest.approx([REFERENCE_CE, math.log(2)], rel=1e-12)


def test_a_422_becomes_a_problem_error_naming_row_and_column(server_url: str) -> None:
    with Client(server_url) as xent, pytest.raises(ProblemError) as caught:
        xent.cross_entropy([1, 2], [[0.2, 0.5, 0.3], [0.1, 1.5, 0.1]])
    error = caught.value
    assert (error.status, error.title, error.type) == (422, "Invalid input", "urn:xent:problem:invalid-input")
    assert error.is_client_error
    assert "predictions row 1" in error.detail
    (detail,) = error.errors
    assert (detail.loc, detail.field, detail.row, detail.column) == (("body", "predictions", 1, 1), "predictions", 1, 1)


def test_a_chunked_error_names_the_row_of_the_whole_dataset(server_url: str) -> None:
    predictions = np.full((1000, 3), 1 / 3)
    labels = np.zeros(1000, dtype=np.int64)
    labels[737] = 7
    with Client(server_url) as xent, pytest.raises(ProblemError) as caught:
        xent.score_many(labels, predictions, chunk_size=100, progress=False)
    assert caught.value.status == 422
    assert [(e.field, e.row) for e in caught.value.errors] == [("labels", 737)]
    assert caught.value.detail.startswith("in the chunk of rows 700..799")


def test_a_server_that_answers_503_twice_is_retried(flaky_server: tuple[str, Flaky]) -> None:
    url, flaky = flaky_server
    with Client(url, backoff=0.01) as xent:
        scores = xent.cross_entropy([1], [[0.228, 0.619, 0.153]])
    assert scores.mean.cross_entropy == REFERENCE_CE
    assert flaky.requests == 3


def test_retries_are_bounded(flaky_server: tuple[str, Flaky]) -> None:
    url, flaky = flaky_server
    with Client(url, retries=1, backoff=0.01) as xent, pytest.raises(ProblemError) as caught:
        xent.cross_entropy([1], [[0.228, 0.619, 0.153]])
    assert (caught.value.status, caught.value.title, caught.value.is_client_error) == (503, "Not ready", False)
    assert flaky.requests == 2


@pytest.mark.anyio
async def test_async_client_retries_503_too() -> None:
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        flaky = Flaky(app, failures=2)
        async with _client(flaky, backoff=0.01) as xent:
            scores = await xent.cross_entropy([1], [[0.228, 0.619, 0.153]])
    assert scores.mean.cross_entropy == REFERENCE_CE
    assert flaky.requests == 3


def test_a_refused_connection_is_retried_then_a_transport_error() -> None:
    with (
        socket_closed_port() as url,
        Client(url, retries=2, backoff=0.001) as xent,
        pytest.raises(TransportError, match=r"after 3 tries: ConnectError"),
    ):
        xent.cross_entropy([1], [[0.5, 0.5]])


def socket_closed_port() -> Any:
    """A URL where nothing listens."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed() -> Any:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}"

    return closed()


def test_a_slow_answer_is_a_timeout_error() -> None:
    app = create_app(Settings())

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            import anyio

            await anyio.sleep(2)
        await app(scope, receive, send)

    for url in serve_in_thread(slow):
        with Client(url, timeout=0.2) as xent, pytest.raises(TransportError, match="no answer in time"):
            xent.cross_entropy([1], [[0.5, 0.5]])


@pytest.mark.anyio
async def test_url_and_api_key_come_from_the_environment(recorder: Flaky, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENT_URL", "http://from-env:9999/")
    monkeypatch.setenv("XENT_API_KEY", "s3cret")
    async with AsyncClient(transport=asgi_transport(recorder)) as xent:
        assert xent.config.base_url == "http://from-env:9999"
        await xent.cross_entropy([1], [[0.228, 0.619, 0.153]])
    assert recorder.headers[0]["authorization"] == "Bearer s3cret"
    assert recorder.headers[0]["host"] == "from-env:9999"
    async with AsyncClient("http://test", api_key="", transport=asgi_transport(recorder)) as xent:
        await xent.cross_entropy([1], [[0.228, 0.619, 0.153]])
    assert "authorization" not in recorder.headers[1]  # an explicit empty key sends none


def test_a_misspelt_option_is_a_type_error_naming_the_options(server_url: str) -> None:
    with Client(server_url) as xent, pytest.raises(TypeError, match=r"unknown option 'smoothing'.*label_smoothing"):
        xent.score_many([1], [[0.5, 0.5]], smoothing=0.1)  # type: ignore[call-overload]


def test_info_reports_the_body_limit(server_url: str) -> None:
    with Client(server_url) as xent:
        assert xent.info()["limits"]["max_body_bytes"] == Settings().max_body_bytes


def test_client_imports_neither_fastapi_nor_pydantic() -> None:
    import subprocess
    import sys

    web = "('fastapi', 'starlette', 'pydantic')"
    code = f"import sys, service.client; print(sorted(m for m in {web} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_client_takes_only_the_contract_and_the_state_merge_from_the_core() -> None:
    """Scoring in-process is the CLI's business (service/cli/local.py): the client knows the core's contract, and
    merges chunks' states with the service's own merge (issue 15: not a second implementation)."""
    import ast
    from pathlib import Path

    package = Path(__file__).parents[2] / "service" / "client"
    imported = {
        (path.name, node.module if isinstance(node, ast.ImportFrom) else alias.name)
        for path in package.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    from_core = {(file, module) for file, module in imported if module and module.startswith("service.core")}
    assert {module for _, module in from_core} == {"service.core.contract", "service.core.state"}, from_core


@pytest.mark.anyio
async def test_async_methods_raise_a_misspelt_option_where_awaited() -> None:
    async with AsyncClient("http://127.0.0.1:9") as xent:
        call = xent.score_many([1], [[0.5, 0.5]], epsilonn=0.1)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="unknown option 'epsilonn'"):
            await call


def test_transport_errors_wrap_httpx() -> None:
    assert issubclass(TransportError, Exception)
    assert not issubclass(TransportError, httpx.HTTPError)


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [
        ([1.0, 2.0], "float64"),  # whole numbers, but floats: the API refuses them, so does the client
        (np.array([1.0, np.nan]), "float64"),  # a pandas integer column with a missing value
        (np.array([1, 2], dtype=np.float32), "float32"),
        ([True, False], "bool"),
    ],
)
def test_float_class_labels_are_refused_before_sending_with_the_services_422(
    labels: Any, dtype: str, server_url: str
) -> None:
    predictions = [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]]
    message = (
        "expected 1-D integer class indices, 1-D class names or 2-D float target rows, "
        f"got a 1-D array of dtype {dtype}"
    )
    # Nothing listens at the closed port: the client refuses the labels before it tries to send them.
    with socket_closed_port() as url, Client(url, retries=0) as xent, pytest.raises(InvalidInputError) as caught:
        xent.cross_entropy(labels, predictions)
    refused = caught.value
    assert isinstance(refused, ProblemError)
    assert isinstance(refused, ValueError)
    # The service's answer to the same array, sent as it is (NPZ): the same problem, word for word.
    body = io.BytesIO()
    np.savez(body, labels=np.asarray(labels), predictions=np.asarray(predictions))
    answer = httpx.post(f"{server_url}/v1/cross-entropy", content=body.getvalue(), headers=NPZ_HEADERS)
    assert answer.status_code == 422, answer.text
    assert answer.json() == {
        "type": refused.type,
        "title": refused.title,
        "status": refused.status,
        "detail": refused.detail,
        "errors": [{"loc": list(e.loc), "msg": e.msg, "type": e.type} for e in refused.errors],
    }
    assert (refused.status, refused.title, refused.type) == (422, "Invalid input", "urn:xent:problem:invalid-input")
    assert refused.detail == f"labels: {message}"
    assert [(e.loc, e.msg, e.type) for e in refused.errors] == [(("body", "labels"), message, "bad_shape")]


@pytest.mark.anyio
async def test_the_async_client_refuses_float_class_labels_where_awaited() -> None:
    async with AsyncClient("http://127.0.0.1:9", retries=0) as xent:
        call = xent.score_many([1.0, 2.0], [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])
        with pytest.raises(InvalidInputError, match=r"^422 Invalid input: labels: expected 1-D integer"):
            await call


def test_integer_target_rows_score_alike_as_json_and_as_npz(server_url: str) -> None:
    """One-hot rows of integers are distributions whichever transport carries them (NPZ refused them before)."""
    one_hot, predictions = [[0, 1, 0], [1, 0, 0]], [[0.228, 0.619, 0.153], [0.5, 0.25, 0.25]]
    with Client(server_url) as xent:
        by_json = xent.cross_entropy(one_hot, predictions, transport="json")
        by_npz = xent.cross_entropy(np.array(one_hot), predictions, transport="npz")
    assert (
        by_json.mean.cross_entropy
        == by_npz.mean.cross_entropy
        == pytest.approx((REFERENCE_CE + math.log(2)) / 2, rel=1e-15)
    )
    assert by_json.settings["label_type"] == by_npz.settings["label_type"] == "distributions"


@pytest.mark.parametrize("given", ["argument", "environment"])
def test_a_url_without_a_scheme_is_a_value_error_with_a_hint(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENT_URL", "localhost:8000")
    where = "XENT_URL" if given == "environment" else "base_url"
    hint = f'{where}: "localhost:8000" has no scheme; did you mean http://localhost:8000?'
    with pytest.raises(ValueError, match=f"^{re.escape(hint)}$"):
        Client("localhost:8000" if given == "argument" else None)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.org", '"ftp://example.org" is not an http:// or https:// address'),
        ("http://", '"http://" has no host; for example http://127.0.0.1:8000'),
    ],
)
def test_a_url_that_is_not_a_service_address_is_a_value_error(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^base_url: {re.escape(problem)}$"):
        AsyncClient(url)


def test_a_one_chunk_error_is_the_services_own_without_chunk_wording(server_url: str) -> None:
    with Client(server_url) as xent, pytest.raises(ProblemError) as caught:
        xent.score_many([1, 7, 0], [[1 / 3] * 3] * 3, progress=False)
    assert caught.value.detail == "labels row 1: class index 7 is out of range [0, 3)"
    assert [(e.field, e.row) for e in caught.value.errors] == [("labels", 1)]


@pytest.mark.parametrize(
    ("rows", "weights", "detail"),
    [
        (1000, None, "labels: has 1000 entries but predictions have 999 rows"),
        (999, 998, "sample_weights: has 998 values but there are 999 rows"),
    ],
)
def test_chunks_do_not_hide_rows_the_labels_or_weights_lack(
    rows: int, weights: int | None, detail: str, server_url: str
) -> None:
    """Slicing 1,000 labels into chunks of 999 predictions' rows scored 999 of them; the service's 422 says why not."""
    options: dict[str, Any] = {} if weights is None else {"sample_weights": np.ones(weights)}
    with Client(server_url) as xent, pytest.raises(ProblemError) as caught:
        xent.score_many(np.zeros(rows, dtype=np.int64), np.full((999, 3), 1 / 3), chunk_size=100, **options)
    assert (caught.value.status, caught.value.detail) == (422, detail)


def test_a_large_body_is_handed_to_the_connection_in_pieces_with_its_whole_length() -> None:
    from service.client.wire import SEND_PIECE_BYTES, Request

    content = bytes(range(256)) * (3 * SEND_PIECE_BYTES // 256 + 7)
    request = Request("/v1/cross-entropy", content, {"content-type": "application/x-npz"}, {})
    pieces, headers = request.pieces()
    assert not isinstance(pieces, bytes)
    received = list(pieces)
    assert [len(piece) for piece in received[:-1]] == [SEND_PIECE_BYTES] * (len(received) - 1)
    assert b"".join(received) == content
    assert headers == {"content-type": "application/x-npz", "content-length": str(len(content))}
    again, _ = request.pieces()  # afresh for a retry
    assert b"".join(again) == content
    small = Request("/v1/cross-entropy", b"{}", {"content-type": "application/json"}, {})
    assert small.pieces() == (b"{}", {"content-type": "application/json"})


@pytest.mark.parametrize("npz_min_values", [10**12, 0], ids=["json", "npz"])
def test_sync_client_sends_a_large_body_in_pieces_and_gets_the_whole_answer(
    server_url: str, npz_min_values: int
) -> None:
    rng = np.random.default_rng(11)
    predictions = rng.dirichlet(np.ones(8), size=60_000)  # 3.8 MB as NPZ, more as JSON: sent in pieces
    labels = rng.integers(0, 8, size=60_000)
    with Client(server_url, npz_min_values=npz_min_values) as xent:
        scores = xent.cross_entropy(labels, predictions, per_sample=False)
    expected = -np.log(predictions[np.arange(60_000), labels]).mean()
    assert scores.n == 60_000
    assert scores.mean.cross_entropy == pytest.approx(expected, rel=1e-12)


@pytest.mark.anyio
async def test_a_large_body_is_handed_to_an_async_connection_in_pieces_with_its_whole_length() -> None:
    from service.client.wire import SEND_PIECE_BYTES, Request

    content = bytes(range(256)) * (2 * SEND_PIECE_BYTES // 256 + 3)
    request = Request("/v1/cross-entropy", content, {"content-type": "application/x-npz"}, {})
    pieces, headers = request.async_pieces()
    assert not isinstance(pieces, bytes)
    received = [piece async for piece in pieces]
    assert [len(piece) for piece in received] == [SEND_PIECE_BYTES, SEND_PIECE_BYTES, 768]
    assert b"".join(received) == content
    assert headers == {"content-type": "application/x-npz", "content-length": str(len(content))}
    again, _ = request.async_pieces()  # afresh for a retry
    assert not isinstance(again, bytes)
    assert b"".join([piece async for piece in again]) == content
    small = Request("/v1/cross-entropy", b"{}", {"content-type": "application/json"}, {})
    assert small.async_pieces() == (b"{}", {"content-type": "application/json"})


@pytest.mark.anyio
@pytest.mark.parametrize("npz_min_values", [10**12, 0], ids=["json", "npz"])
async def test_async_client_sends_a_large_body_in_pieces_and_gets_the_whole_answer(
    server_url: str, npz_min_values: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.client.wire import Request

    sent: list[bool] = []  # whether each body went in pieces
    async_pieces = Request.async_pieces

    def spied(request: Request) -> Any:
        content, headers = async_pieces(request)
        sent.append(not isinstance(content, bytes))
        return content, headers

    monkeypatch.setattr(Request, "async_pieces", spied)
    rng = np.random.default_rng(12)
    predictions = rng.dirichlet(np.ones(8), size=60_000)  # 3.8 MB as NPZ, more as JSON: sent in pieces
    labels = rng.integers(0, 8, size=60_000)
    async with AsyncClient(server_url, npz_min_values=npz_min_values) as xent:
        scores = await xent.cross_entropy(labels, predictions, per_sample=False)
    assert sent == [True]
    expected = -np.log(predictions[np.arange(60_000), labels]).mean()
    assert scores.n == 60_000
    assert scores.mean.cross_entropy == pytest.approx(expected, rel=1e-12)


@pytest.mark.anyio
async def test_a_retried_large_body_is_sent_in_pieces_again_with_its_length(flaky_server: tuple[str, Flaky]) -> None:
    url, flaky = flaky_server
    rng = np.random.default_rng(13)
    predictions = rng.dirichlet(np.ones(8), size=60_000)
    labels = rng.integers(0, 8, size=60_000)
    async with AsyncClient(url, npz_min_values=0, backoff=0.01) as xent:
        scores = await xent.cross_entropy(labels, predictions, per_sample=False)
    assert flaky.requests == 3
    lengths = [int(headers["content-length"]) for headers in flaky.headers]
    assert lengths == [lengths[0]] * 3  # the whole length every time, sent in pieces
    assert lengths[0] >= 2 << 20
    assert not any("transfer-encoding" in headers for headers in flaky.headers)
    assert scores.mean.cross_entropy == pytest.approx(-np.log(predictions[np.arange(60_000), labels]).mean(), rel=1e-12)
