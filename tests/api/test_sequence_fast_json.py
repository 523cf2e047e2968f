"""The JSON fast paths of `/v1/sequence-cross-entropy` (`_json_sequences`: `token_logprobs` read from its own text
with nulls as a sentinel, `completions` read into sequences with each token's byte count from simdjson's text of
its array, or down to two lists an object when anything is unusual) give what the reference path gives.

Two apps differ only in ``fast_json_min_bytes`` (0: every body tries the fast paths; huge: none does); every
body, valid or broken, must get the same status and the very same JSON from both, and the valid ones must
really have taken the fast path.
"""

import asyncio
import json
import math
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from in_process import in_process_client

from service.api import create_app
from service.api.sequence_schemas import SequenceCrossEntropyRequest
from service.api.transport import _json_sequences
from service.api.transport._json_outline import JsonOutline
from service.api.transport._json_sequences import decode_completions, decode_logprob_sequences
from service.core.sequence_forms import Sequences, read_form
from service.settings import Settings

FAST = create_app(Settings(fast_json_min_bytes=0))
REFERENCE = create_app(Settings(fast_json_min_bytes=10**12))
ROUTE = "/v1/sequence-cross-entropy"


async def _post_both(body: bytes) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for app in (FAST, REFERENCE):
        async with in_process_client(app) as client:
            answers.append(await client.post(ROUTE, content=body, headers={"content-type": "application/json"}))
    return answers[0], answers[1]


def _same(body: bytes) -> tuple[int, dict[str, Any]]:
    fast, reference = asyncio.run(_post_both(body))
    assert (fast.status_code, fast.json()) == (reference.status_code, reference.json())
    return fast.status_code, fast.json()


def _rows(text: str = "[null, -1.5, -0.25, -3]") -> str:
    return ", ".join([text, "[]", "[-0.5]", "[null, null, -2e-3, 0]"] * 50)


VALID = [
    pytest.param(f'{{"token_logprobs": [{_rows()}], "num_bytes": [{", ".join(["3"] * 200)}]}}', id="nulls"),
    pytest.param('{"unit": "bits", "token_logprobs": [[-1, -2.5], [], [-0.125]], "score_from": 1}', id="no-nulls"),
    pytest.param('{"token_logprobs": []}', id="empty"),
    pytest.param('{"token_logprobs": [[null], [null, null]], "per_document": false}', id="only-nulls"),
]


@pytest.mark.parametrize("body", VALID)
def test_valid_token_logprobs_take_the_fast_path_and_answer_the_same(body: str) -> None:
    data = body.encode()
    request = decode_logprob_sequences(SequenceCrossEntropyRequest, data, JsonOutline.of(data))
    assert request is not None
    assert isinstance(request.token_logprobs, Sequences)
    status, _ = _same(data)
    assert status == 200


#: Bodies the fast path must not vouch for (or whose values the core refuses): the same answer either way.
ODD = [
    "[-1, 8e88]",  # the sentinel sent as a number: refused as above 0, not read as null
    "[-1, 8.0e88, null]",
    '[-1, "x"]',
    "[-1, [2]]",
    "[true, -1]",
    "[-1, 1e999]",
    "[-1, NaN]",
    "[-1, 0.5]",
    "[-1, -9999]",
    "null",
    "{}",
    "[-1, nul]",
    "[-1, nullnull]",
]


@pytest.mark.parametrize("row", ODD)
def test_odd_rows_get_the_reference_answer(row: str) -> None:
    body = f'{{"token_logprobs": [[null, -1.0], {row}]}}'.encode()
    status, _ = _same(body)
    assert status in (400, 422)


def _completions(count: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "tokens": ["The", " null", " é", '"'],
            "token_logprobs": [None, -1.0, -2.5, -0.25],
            "text_offset": [0, 3, 8, 10],
            "top_logprobs": [None, {" null": -1.0, " a": -0.5}, {" é": -2.5}, {'"': -0.25}],
        }
        for _ in range(count)
    ]


def test_completions_take_the_fast_path_and_answer_the_same() -> None:
    body = json.dumps({"completions": _completions(), "score_until": -1, "unit": "hartleys"}).encode()
    request = decode_completions(SequenceCrossEntropyRequest, body)
    assert request is not None
    # Read straight into Sequences: the log-probabilities, and each token's UTF-8 byte count from its JSON text.
    assert isinstance(request.completions, Sequences)
    assert request.completions.logprobs[:4].tolist() == pytest.approx([math.nan, -1.0, -2.5, -0.25], nan_ok=True)
    assert request.completions.token_bytes[:4].tolist() == [3, 5, 3, 1]
    status, answer = _same(body)
    assert status == 200
    assert answer["settings"]["bytes_source"] == "token_text"
    assert answer["n_tokens"] == 80  # positions 1 and 2 of each: 5 + 3 bytes


#: Token texts whose JSON has escapes (two-character and \u00XX), multi-byte characters (a surrogate pair when
#: written ASCII-only), U+FFFD and JSON's own punctuation.
TEXTS = [
    "\n",
    '"',
    "\\",
    '\\"\\',
    "\t\r\b\f",
    "\x00\x01\x1f",
    "\x7f",
    "é",
    "€",
    "😀",
    "\ufffd",
    "a\ufffdb",
    "",
    "[",
    "],[",
    '","',
    "null",
    " über",
    "/",
    "\u2028",
]


def _texts_body(token_lists: list[list[str]], ensure_ascii: bool) -> bytes:
    items = [
        {"tokens": tokens, "token_logprobs": [None, *[-0.5] * (len(tokens) - 1)][: len(tokens)]}
        for tokens in token_lists
    ]
    return json.dumps({"completions": items}, ensure_ascii=ensure_ascii).encode()


def _fast_sequences(body: bytes) -> Sequences:
    request = decode_completions(SequenceCrossEntropyRequest, body)
    assert request is not None
    assert isinstance(request.completions, Sequences)
    return request.completions


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["ascii-json", "utf8-json"])
def test_token_byte_counts_of_escaped_and_multibyte_texts_are_their_utf8_lengths(ensure_ascii: bool) -> None:
    token_lists = [TEXTS[shift:] + TEXTS[:shift] for shift in range(len(TEXTS))]
    body = _texts_body(token_lists, ensure_ascii)
    sequences = _fast_sequences(body)
    texts = [text for tokens in token_lists for text in tokens]
    assert sequences.token_bytes is not None
    assert sequences.replacement is not None
    assert sequences.token_bytes.tolist() == [len(text.encode()) for text in texts]
    assert sequences.replacement.tolist() == ["\ufffd" in text for text in texts]
    reference = read_form({"completions": json.loads(body)["completions"]})
    assert reference.token_bytes is not None
    assert sequences.token_bytes.tolist() == reference.token_bytes.tolist()
    status, answer = _same(body)
    assert status == 200
    assert answer["settings"]["bytes_source"] == "token_text"
    assert answer["warnings"][-1]["code"] == "APPROXIMATE_BYTES"


@pytest.mark.parametrize("chunk_bytes", [1, 40, 1 << 18])
def test_token_byte_counts_are_the_same_read_in_pieces(chunk_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The texts are counted a few hundred kilobytes at a time: every cut between arrays gives the same counts.
    token_lists = [TEXTS[shift:] + TEXTS[:shift] for shift in range(len(TEXTS))] + [[], ["é"], []]
    monkeypatch.setattr(_json_sequences, "CHUNK_BYTES", chunk_bytes)
    sequences = _fast_sequences(_texts_body(token_lists, ensure_ascii=True))
    texts = [text for tokens in token_lists for text in tokens]
    assert sequences.token_bytes is not None
    assert sequences.replacement is not None
    assert sequences.token_bytes.tolist() == [len(text.encode()) for text in texts]
    assert sequences.replacement.tolist() == ["\ufffd" in text for text in texts]


@pytest.mark.parametrize(
    ("logprobs", "options", "fast", "status"),
    [
        pytest.param([None, 0.0, -0.0, -1.0], {}, True, 200, id="zeros"),
        pytest.param([None, 0, -1, -2.5], {}, True, 200, id="integers"),
        pytest.param([None, None, -1.0, -2.5], {"score_from": 2}, False, 200, id="a-null-not-scored"),
        pytest.param([None, -1.0, False, -2.5], {}, False, 422, id="false"),
        pytest.param([None, True, -1.0, -2.5], {}, False, 422, id="true"),
    ],
)
def test_log_probabilities_read_as_numbers_answer_as_the_reference(
    logprobs: list[Any], options: dict[str, Any], fast: bool, status: int
) -> None:
    # Zeros and integers stay on the fast path; a boolean read as 0 or 1, or a null past the first, take the list
    # path, for the core to read (and refuse).
    items = _completions()
    items[7]["token_logprobs"] = logprobs
    body = json.dumps({"completions": items, **options}).encode()
    request = decode_completions(SequenceCrossEntropyRequest, body)
    assert request is not None
    assert isinstance(request.completions, Sequences) == fast
    assert _same(body)[0] == status


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.text(max_size=5), max_size=6), max_size=5), st.booleans())
def test_token_byte_counts_are_the_utf8_lengths_of_any_texts(token_lists: list[list[str]], ensure_ascii: bool) -> None:
    sequences = _fast_sequences(_texts_body(token_lists, ensure_ascii))
    texts = [text for tokens in token_lists for text in tokens]
    assert sequences.token_bytes is not None
    assert sequences.replacement is not None
    assert sequences.token_bytes.tolist() == [len(text.encode()) for text in texts]
    assert sequences.replacement.tolist() == ["\ufffd" in text for text in texts]
    assert sequences.offsets.tolist() == np.cumsum([0] + [len(tokens) for tokens in token_lists]).tolist()


@pytest.mark.parametrize(
    "completions",
    [
        pytest.param([], id="none"),
        pytest.param([{"tokens": [], "token_logprobs": []}], id="an-empty-one"),
        pytest.param(
            [{"tokens": ["a"], "token_logprobs": [None]}, {"tokens": [], "token_logprobs": []}], id="one-null"
        ),
    ],
)
def test_empty_completions_take_the_fast_path_and_answer_the_same(completions: list[dict[str, Any]]) -> None:
    body = json.dumps({"completions": completions}).encode()
    assert isinstance(_fast_sequences(body), Sequences)
    assert _same(body)[0] == 200


@pytest.mark.parametrize(
    "tokens",
    [
        pytest.param(["The", 1, " é", '"'], id="a-number"),
        pytest.param(["The", None, " é", '"'], id="a-null"),
        pytest.param(["The", [" null", " é"], 1, '"'], id="a-list-and-a-number-as-many-strings"),
        pytest.param(["The", {" null": " é"}, True, '"'], id="an-object"),
        pytest.param(None, id="no-tokens"),
    ],
)
def test_tokens_that_are_not_all_strings_take_the_list_path_and_get_the_reference_answer(tokens: Any) -> None:
    items = _completions()
    if tokens is None:
        items[5].pop("tokens")
    else:
        items[5]["tokens"] = tokens
    body = json.dumps({"completions": items}).encode()
    request = decode_completions(SequenceCrossEntropyRequest, body)
    assert request is not None
    assert isinstance(request.completions, list)  # the two lists of each object, for the core to read
    status, answer = _same(body)
    assert status == 200
    assert answer["settings"]["bytes_source"] is None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda items: items[3].update(tokens="The null é"), id="tokens-a-string"),
        pytest.param(lambda items: items[3].update(token_logprobs={"0": -1}), id="logprobs-an-object"),
        pytest.param(lambda items: items[3].pop("token_logprobs"), id="no-logprobs"),
        pytest.param(lambda items: items[3].update(token_logprobs=[None, -1.0, 2.0, -1.0]), id="positive"),
        pytest.param(lambda items: items[3].update(token_logprobs=[None, True, -1.0, -1.0]), id="a-boolean"),
        pytest.param(lambda items: items[3].update(token_logprobs=[None, "-1", -1.0, -1.0]), id="a-string"),
        pytest.param(lambda items: items[3].update(token_logprobs=[None, [-1.0], -1.0, -1.0]), id="a-list"),
        pytest.param(lambda items: items[3].update(token_logprobs=[None, None, -1.0, -1.0]), id="null-scored"),
        pytest.param(lambda items: items[3].update(token_logprobs=[None, -9999, -1.0, -1.0]), id="placeholder"),
        pytest.param(lambda items: items[3].update(tokens=["a", "b"]), id="tokens-too-short"),
        pytest.param(lambda items: items.__setitem__(3, [1, 2]), id="not-an-object"),
    ],
)
def test_odd_completions_get_the_reference_answer(change: Any) -> None:
    items = _completions()
    change(items)
    status, _ = _same(json.dumps({"completions": items}).encode())
    assert status == 422


def test_a_duplicate_key_or_an_unknown_field_gives_way() -> None:
    item = '{"tokens": ["a", "b"], "token_logprobs": [null, -1.0], "token_logprobs": [null, -2.0]}'
    body = ('{"completions": [' + ", ".join([item] * 20) + "]}").encode()
    assert decode_completions(SequenceCrossEntropyRequest, body) is None
    assert _same(body)[0] == 200
    body = json.dumps({"completions": _completions(), "per_sample": True}).encode()
    assert decode_completions(SequenceCrossEntropyRequest, body) is None
    assert _same(body)[0] == 422


def test_completions_past_the_batch_limits_get_the_reference_413() -> None:
    # The completions path reads the body before any outline: the outline's limits then apply to what it read,
    # and the 413 names `completions` (its 40 objects), not the 160 token positions counted after decoding.
    body = json.dumps({"completions": _completions(), "score_until": [-1] * 40}).encode()
    answers = []
    for threshold in (0, 10**12):
        app = create_app(Settings(fast_json_min_bytes=threshold, max_cells=30))
        answers.append(asyncio.run(_post_to(app, body)))
    fast, reference = answers
    assert (fast.status_code, fast.json()) == (reference.status_code, reference.json())
    assert reference.status_code == 413
    assert reference.json()["detail"] == "completions has 40 values; the limit is 30 (XENT_MAX_CELLS)"


async def _post_to(app: Any, body: bytes) -> httpx.Response:
    async with in_process_client(app) as client:
        return await client.post(ROUTE, content=body, headers={"content-type": "application/json"})


# --- the scans before the parse: memchr hops, then the whole-text fallback ---


@pytest.mark.parametrize("nulls", [0, 1, 5, 40])
@pytest.mark.parametrize("hops", [0, 3, 4096])
def test_null_starts_are_every_n_whether_hopped_to_or_compared(
    nulls: int, hops: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_json_sequences, "_NULL_HOPS", hops)
    rows = ", ".join(["[null, -1.5]"] * nulls + ["[-2, -0.5]"] * 3)
    text = bytearray(f"[{rows}, [null]]".encode())

    starts = _json_sequences.null_starts(text, 0, len(text))
    inner = _json_sequences.null_starts(text, 1, len(text) - 1)  # from an offset: counted from it

    assert starts.tolist() == [i for i, byte in enumerate(text) if byte == ord("n")]
    assert len(starts) == nulls + 1
    assert (inner + 1).tolist() == starts.tolist()


def _key_body(before: int) -> bytes:
    """A body with ``before`` strings ahead of its "completions" key."""
    ids = ", ".join(f'"d{i}"' for i in range(before))
    return f'{{"document_ids": [{ids}], "completions": []}}'.encode()


@pytest.mark.parametrize("before", [0, 2, 50])
@pytest.mark.parametrize("hops", [0, 1, 4096])
def test_the_completions_key_is_found_whether_hopped_to_or_searched(
    before: int, hops: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_json_sequences, "_KEY_HOPS", hops)
    key = _json_sequences._COMPLETIONS_KEY
    body = _key_body(before)
    absent = body.replace(b'"completions"', b'"chat"')

    assert _json_sequences._mentions(body, key)
    assert not _json_sequences._mentions(absent, key)
    assert _json_sequences._mentions(bytearray(body), key)
    assert not _json_sequences._mentions(memoryview(absent), key)


def test_a_body_in_a_memory_map_is_searched_in_place_and_only_up_to_its_end() -> None:
    import mmap

    key = _json_sequences._COMPLETIONS_KEY
    body = _key_body(3)
    mapped = mmap.mmap(-1, len(body) + 100)
    mapped[: len(body)] = body
    whole = memoryview(mapped)
    cut = body.index(b'"completions"') + 5  # the key's last bytes fall past the view's end

    assert _json_sequences._findable(whole[: len(body)]) is mapped
    assert _json_sequences._mentions(whole[: len(body)], key)
    assert not _json_sequences._mentions(whole[:cut], key)
    # A view that starts later cannot be searched in its owner's index space: the expression reads it.
    later = whole[1 : len(body)]
    assert _json_sequences._findable(later) is None
    assert _json_sequences._mentions(later, key)
    whole.release()
    later.release()


@pytest.mark.parametrize("outlined", [True, False], ids=["outline", "quotes"])
@pytest.mark.parametrize(
    "rows", ["[null, -1.5], [-2, null, -0.5]", "[null, -1.5], [-2, 8e88]"], ids=["read", "given-way"]
)
@pytest.mark.parametrize("holder", ["bytes", "bytearray", "memory-map"])
def test_the_body_is_as_it_came_after_the_fast_path_read_it_in_place_or_gave_way(
    rows: str, holder: str, outlined: bool
) -> None:
    import mmap

    original = f'{{"unit": "bits", "token_logprobs": [{rows}]}}'.encode()
    body: bytes | bytearray | memoryview
    if holder == "memory-map":
        mapped = mmap.mmap(-1, len(original) + 64)
        mapped[: len(original)] = original
        body = memoryview(mapped)[: len(original)]
    else:
        body = original if holder == "bytes" else bytearray(original)

    outline = JsonOutline.of(body) if outlined else None
    request = decode_logprob_sequences(SequenceCrossEntropyRequest, body, outline)

    assert bytes(body) == original
    if rows.endswith("8e88]"):  # the sentinel sent as a number: more sentinels than nulls, the reference decides
        assert request is None
    else:
        assert request is not None
        assert isinstance(request.token_logprobs, Sequences)
        assert np.array_equal(request.token_logprobs.logprobs, [np.nan, -1.5, -2, np.nan, -0.5], equal_nan=True)
        assert request.token_logprobs.offsets.tolist() == [0, 2, 5]


# --- token_logprobs without an outline: the field placed by the body's quotes, before the containers are counted ---

#: Rows enough for a body past the 4 KiB scored on the event loop (which decodes as small bodies do).
BIG_ROWS = ", ".join(["[null, -1.5, -0.25, -3]", "[]", "[-0.5, null]", "[-1e-3, 0, -2.5E+1]"] * 100)
BIG_S = 400


def _ids(*texts: str) -> str:
    return json.dumps([texts[index % len(texts)] for index in range(BIG_S)])


#: Bodies the path without an outline reads: options on either side of the field, strings holding the field's
#: name, brackets, braces, colons and 'n's, whitespace around the colon.
PLACED = [
    pytest.param(f'{{"token_logprobs": [{BIG_ROWS}]}}', id="alone"),
    pytest.param(f'{{"unit": "bits", "token_logprobs": [{BIG_ROWS}], "score_from": 1}}', id="options-around"),
    pytest.param(
        f'{{"document_ids": {_ids("token_logprobs", "[x", "y]", "{{", "}}", ":", "null")}, '
        f'"token_logprobs" :\n [{BIG_ROWS}], "per_document": false}}',
        id="strings-like-the-body",
    ),
    pytest.param(
        f'{{"num_bytes": {json.dumps([3] * BIG_S)}, "score_until": {json.dumps([-1] * BIG_S)}, '
        f'"token_logprobs": [{BIG_ROWS}]}}',
        id="arrays-before",
    ),
    pytest.param(f' \n{{ "token_logprobs":[{BIG_ROWS.replace(", ", ",")}] }}\n', id="whitespace"),
]


def _read_alike(first: Any, second: Any) -> None:
    """Two decoded requests hold the same options and the same sequences."""
    assert first.model_dump(exclude={"token_logprobs"}) == second.model_dump(exclude={"token_logprobs"})
    one, other = first.token_logprobs, second.token_logprobs
    assert np.array_equal(one.logprobs, other.logprobs, equal_nan=True)
    assert np.array_equal(one.offsets, other.offsets)
    assert np.array_equal(one.missing, np.flatnonzero(np.isnan(one.logprobs)))


@pytest.mark.parametrize("body", PLACED)
def test_token_logprobs_are_read_without_an_outline_as_with_one(body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = body.encode()
    lean = decode_logprob_sequences(SequenceCrossEntropyRequest, data)
    assert lean is not None
    outlined = decode_logprob_sequences(SequenceCrossEntropyRequest, data, JsonOutline.of(data))
    assert outlined is not None
    _read_alike(lean, outlined)
    reference = read_form({"token_logprobs": json.loads(data)["token_logprobs"]})
    assert np.array_equal(lean.token_logprobs.logprobs, reference.logprobs, equal_nan=True)
    # Over HTTP the body is read before its containers are counted (a count the path without one never needs).
    from service.api import scoring

    def no_count(data: Any) -> int:
        raise AssertionError("the containers were counted")

    monkeypatch.setattr(scoring, "json_containers", no_count)
    fast = asyncio.run(_post_to(FAST, data))
    monkeypatch.undo()
    reference_answer = asyncio.run(_post_to(REFERENCE, data))
    assert (fast.status_code, fast.json()) == (reference_answer.status_code, reference_answer.json())
    assert fast.status_code == 200


#: Bodies it leaves to the outline (None), each for its reason; over HTTP the answer is the reference's.
ESCAPED_IDS = _ids('a"b', "c")
BYTE_ORDER_MARK = "\ufeff"
UNPLACED = [
    pytest.param(f'{{"document_ids": {ESCAPED_IDS}, "token_logprobs": [{BIG_ROWS}]}}', id="escape"),
    pytest.param(f'{{"token_logprobs": [[-1]], "token_logprobs": [{BIG_ROWS}]}}', id="duplicate-key"),
    pytest.param(f'{{"unit": {{"token_logprobs": [[-1]]}}, "x": [{BIG_ROWS}]}}', id="only-nested"),
    pytest.param(f'[{{"token_logprobs": [{BIG_ROWS}]}}]', id="not-an-object"),
    pytest.param(f'{{"token_logprobs": {{"a": [{BIG_ROWS}]}}}}', id="not-an-array"),
    pytest.param(f'{{"token_logprobs": [{BIG_ROWS}], "unit": "furlongs"}}', id="options-refused"),
    pytest.param(f'{{"token_logprobs": [{BIG_ROWS}], "per_sample": true}}', id="unknown-key"),
    pytest.param(f'{{"token_logprobs": [{BIG_ROWS}]]}}', id="unbalanced"),
    pytest.param(f'{{"token_logprobs": [{BIG_ROWS}, [-1, "x"]]}}', id="string-in-a-row"),
    pytest.param(f'{{"token_logprobs": [{BIG_ROWS}, [-1, [-2]]]}}', id="nested-row"),
    pytest.param(f'{BYTE_ORDER_MARK}{{"token_logprobs": [{BIG_ROWS}]}}', id="byte-order-mark"),
]


@pytest.mark.parametrize("body", UNPLACED)
def test_what_the_quotes_cannot_place_is_left_to_the_outline(body: str) -> None:
    data = body.encode()
    assert decode_logprob_sequences(SequenceCrossEntropyRequest, data) is None
    _same(data)


def test_more_quotes_than_the_hops_are_left_to_the_outline(monkeypatch: pytest.MonkeyPatch) -> None:
    data = PLACED[2].values[0].encode()
    monkeypatch.setattr(_json_sequences, "_QUOTE_HOPS", 2 * BIG_S)  # the document ids alone have 2 · S quotes
    assert decode_logprob_sequences(SequenceCrossEntropyRequest, data) is None
    monkeypatch.setattr(_json_sequences, "_QUOTE_HOPS", 2 * BIG_S + 12)
    assert decode_logprob_sequences(SequenceCrossEntropyRequest, data) is not None


def test_token_logprobs_past_the_batch_limits_get_the_reference_413_without_an_outline() -> None:
    body = f'{{"token_logprobs": [{BIG_ROWS}]}}'.encode()
    answers = []
    for threshold in (0, 10**12):
        app = create_app(Settings(fast_json_min_bytes=threshold, max_cells=1000))
        answers.append(asyncio.run(_post_to(app, body)))
    fast, reference = answers
    assert (fast.status_code, fast.json()) == (reference.status_code, reference.json())
    assert reference.status_code == 413
    # The outline's count: S rows × the first row's 4 entries, named as on every path.
    assert reference.json()["detail"] == "token_logprobs has 1,600 values; the limit is 1,000 (XENT_MAX_CELLS)"


# --- the field parsed a piece of whole rows at a time ---

_LOGPROB = st.one_of(st.none(), st.floats(min_value=-50.0, max_value=0.0), st.integers(min_value=-3, max_value=0))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(_LOGPROB, max_size=6), max_size=12),
    separator=st.sampled_from([", ", ",", " , ", ",\n  "]),
    piece_bytes=st.integers(min_value=1, max_value=80),
    holder=st.sampled_from(["bytes", "bytearray"]),
)
def test_the_rows_read_a_piece_at_a_time_are_the_rows_read_whole(
    rows: list[list[float | None]], separator: str, piece_bytes: int, holder: str
) -> None:
    text = "[" + separator.join("[" + separator.join(json.dumps(value) for value in row) + "]" for row in rows) + "]"
    original = f'{{"token_logprobs": {text}, "unit": "bits"}}'.encode()
    body = original if holder == "bytes" else bytearray(original)
    expected = read_form({"token_logprobs": rows})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_json_sequences, "PIECE_BYTES", piece_bytes)
        request = decode_logprob_sequences(SequenceCrossEntropyRequest, body)
    assert bytes(body) == original
    assert request is not None
    read = request.token_logprobs
    assert np.array_equal(read.logprobs, expected.logprobs, equal_nan=True)
    assert np.array_equal(read.offsets, expected.offsets)
    assert np.array_equal(read.missing, np.flatnonzero(np.isnan(expected.logprobs)))


@pytest.mark.parametrize("piece_bytes", [1, 7, 30, 10**9])
@pytest.mark.parametrize(
    "rows",
    [
        "[null, -1], [-2, [-3]], [-4]",  # a nested row, wherever the pieces are cut
        "[null, -1], [-2, 8e88], [-4]",  # the sentinel sent as a number
        '[null, -1], [-2, "x"], [-4]',  # a string (the quotes then place no field)
        "[null, -1], [-2, true], [-4]",
        "[null, -1], [-2, nul], [-4]",
        "[null, -1], [-2], [-4]]",  # one ']' too many
    ],
)
def test_what_a_piece_cannot_read_gives_way_and_leaves_the_body_as_it_came(rows: str, piece_bytes: int) -> None:
    original = f'{{"token_logprobs": [{rows}]}}'.encode()
    body = bytearray(original)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_json_sequences, "PIECE_BYTES", piece_bytes)
        assert decode_logprob_sequences(SequenceCrossEntropyRequest, body) is None
        assert decode_logprob_sequences(SequenceCrossEntropyRequest, body, JsonOutline.of(body)) is None
    assert bytes(body) == original


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"token_logprobs": [[1], [2]]}', "[[1], [2]]"),  # the field last: found from the body's end
        ('{"token_logprobs": []}', "[]"),
        ('{"token_logprobs": [ ] }', "[ ]"),
        ('{"unit": "bits", "token_logprobs": [[1]]}\n', "[[1]]"),
        ('{"token_logprobs": [[1]], "num_bytes": [3]}', "[[1]]"),  # a flat list after it: the next quote bounds it
        ('{"token_logprobs": [[1]], "unit": "bits"}', "[[1]]"),
        ('{"token_logprobs": [[1]]' + " " * 300 + "}", "[[1]]"),  # past the tail read: the quotes decide
        # Not the field, but a text simdjson refuses as one array: the path gives way (a duplicate key).
        ('{"token_logprobs": [[1]], "token_logprobs": [[2]]}', '[[1]], "token_logprobs": [[2]]'),
    ],
)
def test_the_field_is_placed_from_the_bodys_end_or_by_the_next_quote(body: str, field: str) -> None:
    data = body.encode()
    span = _json_sequences._field_span(data, len(data))
    assert span is not None
    assert data[span[0] : span[1]].decode() == field


def test_a_key_of_the_options_after_the_field_that_repeats_it_gives_way() -> None:
    data = b'{"token_logprobs": [[1]], "unit": "bits", "token_logprobs": [[2]], "num_bytes": [1]}'
    assert _json_sequences._field_span(data, len(data)) is None
    assert decode_logprob_sequences(SequenceCrossEntropyRequest, data) is None
