"""The JSON fast path (simdjson → arrays) and the reference path (Pydantic → lists) give the same answers.

Two apps differ only in ``fast_json_min_bytes``: 0 sends every body down the fast path,
a huge value sends every body down the reference path. Random valid and broken bodies
must get the same status and the very same JSON from both.
"""

import asyncio
import json

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from in_process import in_process_client

from service.api import create_app
from service.api.schemas import BinaryCrossEntropyRequest, CrossEntropyRequest
from service.api.transport import _json_fast as fastjson
from service.api.transport._json_fast import decode_fast
from service.settings import Settings

FAST = create_app(Settings(fast_json_min_bytes=0))
REFERENCE = create_app(Settings(fast_json_min_bytes=10**12))

#: Tokens that are not a plain finite number, each a reason for the fast path to give way.
ODD_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "true", "false", "null", '"0.5"', "[0.5]", "[]", "{}"]
#: Unusual but valid numbers, which both paths must read the same.
EDGE_NUMBERS = ["-0.0", "0", "1", "1e-320", "5e-324", "0.1000000000000000055511151231257827", "1E-3", "2.5e-1"]


async def _post_both(path: str, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for app in (FAST, REFERENCE):
        async with in_process_client(app) as client:
            answers.append(await client.post(path, content=body, headers={"content-type": "application/json"}))
    return answers[0], answers[1]


def _assert_same(path: str, body: bytes) -> httpx.Response:
    fast, reference = asyncio.run(_post_both(path, body))
    assert fast.status_code == reference.status_code, (body[:300], fast.text[:300], reference.text[:300])
    assert fast.status_code < 500, fast.text
    assert fast.json() == reference.json(), body[:300]
    return fast


@st.composite
def number_token(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.sampled_from(EDGE_NUMBERS))
    if choice == 1:
        return str(draw(st.integers(-1, 2)))
    return repr(draw(st.floats(0, 1, allow_nan=False)))


@st.composite
def matrix_tokens(draw: st.DrawFn, n: int, c: int) -> list[list[str]]:
    rows = [[draw(number_token()) for _ in range(c)] for _ in range(n)]
    if n and draw(st.integers(0, 6)) == 0:  # break it somewhere
        row = draw(st.integers(0, n - 1))
        how = draw(st.integers(0, 2))
        if how == 0:
            rows[row][draw(st.integers(0, c - 1))] = draw(st.sampled_from(ODD_TOKENS))
        elif how == 1:
            rows[row].append("0.5")
        else:
            rows[row].pop()
    return rows


def _array(tokens: list[str]) -> str:
    return "[" + ",".join(tokens) + "]"


def _matrix(rows: list[list[str]]) -> str:
    return _array([_array(row) for row in rows])


@st.composite
def multiclass_body(draw: st.DrawFn) -> bytes:
    n, c = draw(st.integers(0, 5)), draw(st.integers(1, 4))
    fields = {"predictions": _matrix(draw(matrix_tokens(n, c)))}
    form = draw(st.sampled_from(["indices", "indices", "names", "distributions", "odd"]))
    if form == "indices":
        labels = [str(draw(st.integers(0, c - 1) | st.integers(-1, c))) for _ in range(n)]
        fields["labels"] = _array(labels)
        if draw(st.booleans()):
            fields["ignore_index"] = str(draw(st.sampled_from([-1, 0, -100])))
    elif form == "names":
        names = [f'"c{i}"' for i in range(c)]
        fields["classes"] = _array(names)
        fields["labels"] = _array([draw(st.sampled_from([*names, '"zz"'])) for _ in range(n)])
    elif form == "distributions":
        fields["labels"] = _matrix(draw(matrix_tokens(n, c)))
    else:
        fields["labels"] = _array([draw(st.sampled_from(["1.0", "true", '"1"', "null", "1"])) for _ in range(n)])
    options = {
        "prediction_type": st.sampled_from(['"probabilities"', '"logits"', '"log_probabilities"', '"odds"']),
        "unit": st.sampled_from(['"nats"', '"bits"', '"hartleys"']),
        "label_smoothing": st.sampled_from(["0", "0.1", "1", "0.25", "1.5", "true"]),
        "epsilon": st.sampled_from(['"auto"', "0", "1e-7", "1e-3", "0.6", '"x"']),
        "normalization": st.sampled_from(['"warn"', '"renormalize"', '"renormalize"', '"error"']),
        "tolerance": st.sampled_from(["0.001", "0.5", "0"]),
        "per_sample": st.sampled_from(["true", "false", "1"]),
        "sample_weights": st.just(_array([draw(number_token()) for _ in range(n)])),
        "class_weights": st.just(_array([draw(number_token()) for _ in range(c)])),
        "lable_smoothing": st.just("0.1"),
        "un\\u0069t": st.just('"bits"'),  # a known key spelt with an escape
        'x\\"y': st.just("[1,]"),  # an unknown key with an escaped quote, and a malformed value
    }
    for name in draw(st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True)):
        fields[name] = draw(options[name])
    parts = [f'"{key}":{value}' for key, value in fields.items()]
    if draw(st.integers(0, 9)) == 0:
        parts.append('"unit":"bits"')  # a duplicated key (or a second unit)
    if draw(st.integers(0, 9)) == 0:
        parts.append('"lable_smoothing":0.2')  # an unknown key, perhaps twice
    return ("{" + ",".join(draw(st.permutations(parts))) + "}").encode()


@st.composite
def binary_body(draw: st.DrawFn) -> bytes:
    n, k = draw(st.integers(0, 5)), draw(st.integers(1, 3))
    flat = draw(st.booleans())
    if flat:
        predictions = _array([draw(number_token()) for _ in range(n)])
        labels = _array([draw(st.sampled_from(["0", "1", "0.5", "1.5", "true"])) for _ in range(n)])
    else:
        predictions = _matrix(draw(matrix_tokens(n, k)))
        labels = _matrix([[draw(st.sampled_from(["0", "1", "0.25"])) for _ in range(k)] for _ in range(n)])
    fields = {"predictions": predictions, "labels": labels}
    if draw(st.booleans()):
        fields["prediction_type"] = draw(st.sampled_from(['"probabilities"', '"logits"']))
    if draw(st.booleans()):
        fields["pos_weight"] = draw(st.sampled_from(["2", "-1", _array(["1"] * k), _array(["0.5"] * (k + 1))]))
    if draw(st.booleans()):
        fields["sample_weights"] = _array([draw(number_token()) for _ in range(n)])
    return ("{" + ",".join(f'"{key}":{value}' for key, value in fields.items()) + "}").encode()


@pytest.fixture(params=["whole", "sliced"])
def slicing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Whole-document parsing, or every rows field parsed slice by slice in slices of a row or two."""
    if request.param == "sliced":
        monkeypatch.setattr(fastjson, "SLICED_MIN_BYTES", 0)
        monkeypatch.setattr(fastjson, "SLICE_BYTES", 16)
    return str(request.param)


FIXTURE_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(body=multiclass_body())
def test_multiclass_fast_path_answers_exactly_like_the_reference_path(slicing: str, body: bytes) -> None:
    _assert_same("/v1/cross-entropy", body)


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(body=binary_body())
def test_binary_fast_path_answers_exactly_like_the_reference_path(slicing: str, body: bytes) -> None:
    _assert_same("/v1/binary-cross-entropy", body)


def _large_body(labels: object, rows: int = 3000, classes: int = 10) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(7)
    predictions = rng.dirichlet(np.ones(classes), size=rows)
    body = {"labels": labels if labels is not None else rng.integers(0, classes, rows).tolist()}
    return json.dumps(body | {"predictions": predictions.tolist()}).encode(), predictions


def test_large_valid_bodies_take_the_fast_path_and_match() -> None:
    body, _ = _large_body(None)
    request = decode_fast(CrossEntropyRequest, body)
    assert request is not None
    assert isinstance(request.predictions, np.ndarray)
    assert request.predictions.shape == (3000, 10)
    assert request.labels.dtype == np.int64
    answer = _assert_same("/v1/cross-entropy", body)
    assert answer.json()["n"] == 3000


@pytest.mark.parametrize(
    "body",
    [
        b'{"labels":[1],"predictions":[[0.2,0.8],[0.3,[0.7]]]}',
        b'{"labels":[1,0],"predictions":[[0.2,0.8],[0.3,0.6,0.1]]}',
        b'{"labels":[1,0,1],"predictions":[[0.2,0.8],[0.3,0.6,0.1],[1]]}',
        b'{"labels":[1],"predictions":[[0.2,NaN]]}',
        b'{"labels":[1],"predictions":[[0.2,1e999]]}',
        b'{"labels":[1],"predictions":[[0.2,true]]}',
        b'{"labels":[1],"predictions":[[0.2,null]]}',
        b'{"labels":[1.0],"predictions":[[0.2,0.8]]}',
        b'{"labels":[true],"predictions":[[0.2,0.8]]}',
        b'{"labels":[1],"predictions":[[0.2,0.8]],"labels":[0]}',
        b'{"labels":[1],"predictions":[[0.2,0.8]],"unit":"[bits]"}',
        b'{"labels":[1],"predictions":[[0.2,0.8]],"unit":"parsecs"}',
        b'[{"labels":[1],"predictions":[[0.2,0.8]]}]',
        b'{"labels":[1],"predictions":[[0.2,0.8]]',
        b'{"labels":[1],"predictions":[[0.2,0.8]],"units":"bits"}',
        b'{"labels":[1],"predictions":[[0.2,0.8]],"u\\u006eits":"bits","units":"bits"}',
    ],
    ids=[
        "nested value",
        "ragged row",
        "ragged rows with the right total",
        "NaN token",
        "huge exponent",
        "boolean",
        "null",
        "float label",
        "boolean label",
        "duplicate key",
        "bracket in a string",
        "bad option",
        "not an object",
        "truncated",
        "unknown key",
        "unknown key with an escape, twice",
    ],
)
def test_fast_path_gives_way_on_anything_it_cannot_prove(slicing: str, body: bytes) -> None:
    assert decode_fast(CrossEntropyRequest, body) is None
    _assert_same("/v1/cross-entropy", body)


def test_binary_fast_path_reads_flat_and_multi_label_arrays() -> None:
    flat = decode_fast(BinaryCrossEntropyRequest, b'{"labels":[0,1,1],"predictions":[0.1,0.8,0.6],"pos_weight":3}')
    assert flat is not None
    assert flat.predictions.tolist() == [0.1, 0.8, 0.6]
    assert flat.pos_weight == 3
    rows = decode_fast(BinaryCrossEntropyRequest, b'{"labels":[[0,1]],"predictions":[[0.1,0.8]],"pos_weight":[1,2]}')
    assert rows is not None
    assert rows.pos_weight.tolist() == [1.0, 2.0]


SLICED_CASES = {
    "pretty-printed": None,  # json.dumps(indent=2): newlines and spaces everywhere
    "number before the first row": ("[[", "[7, [", 1),
    "number after the last row": ("]]", "], 7]", 1),
    "number between two rows": ("], [", "], 7, [", 1),
    "two commas between rows": ("], [", "], , [", 1),
    "row one number short": ("], [", "], [0.5], [", 1),
    "bracket inside a class name": ('"A"', '"A[0]"', 1),
    "escaped quote in a class name": ('"A"', '"A\\"x"', 1),
    "brace inside a string": ('"A"', '"{A}"', 1),
}


@pytest.mark.parametrize("case", sorted(SLICED_CASES))
def test_sliced_parsing_reads_exactly_what_the_reference_path_reads(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastjson, "SLICED_MIN_BYTES", 0)
    monkeypatch.setattr(fastjson, "SLICE_BYTES", 64)  # several slices, ends at every kind of gap
    rng = np.random.default_rng(3)
    predictions = np.round(rng.dirichlet(np.ones(4), size=40), 6)
    document = {
        "classes": ["A", "B", "C", "D"],
        "labels": [["A", "B", "C", "D"][i] for i in rng.integers(0, 4, 40)],
        "predictions": predictions.tolist(),
        "unit": "bits",
    }
    text = json.dumps(document, indent=2) if case == "pretty-printed" else json.dumps(document)
    if SLICED_CASES[case] is not None:
        old, new, count = SLICED_CASES[case]  # type: ignore[misc]
        assert old in text
        text = text.replace(old, new, count)
    body = text.encode()
    fast = _assert_same("/v1/cross-entropy", body)
    if case == "pretty-printed":
        assert fast.status_code == 200
        request = decode_fast(CrossEntropyRequest, body)
        assert request is not None
        np.testing.assert_array_equal(request.predictions, predictions)


def test_a_large_batch_is_parsed_slice_by_slice_into_the_same_arrays() -> None:
    rng = np.random.default_rng(11)
    predictions = np.round(rng.dirichlet(np.ones(10), size=40_000), 6)
    labels = rng.integers(0, 10, 40_000)
    body = json.dumps({"labels": labels.tolist(), "predictions": predictions.tolist()}).encode()
    assert len(body) >= fastjson.SLICED_MIN_BYTES
    outline = fastjson._outline(body, CrossEntropyRequest.array_kinds)
    assert outline is not None
    assert [matrix.key for matrix in outline] == ["predictions"]
    request = decode_fast(CrossEntropyRequest, body)
    assert request is not None
    np.testing.assert_array_equal(request.predictions, predictions)
    np.testing.assert_array_equal(request.labels, labels)
