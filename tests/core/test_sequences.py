"""The language-model core (issue 16 §1): input forms, score windows, documents, units, answers and states.

Whole answers are hand-computed (the arithmetic is in the comments); the ratio standard error is checked
against a direct computation of its formula under hypothesis; every input form of the same tokens gives the
same answer; the windows of a document give the whole document's answer; merged states give the answer of
the union of their documents.
"""

import math
from concurrent.futures import Executor, Future
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from whole_answers import EMPTY_WARNING, SEQUENCE_ANSWER, SEQUENCE_BODY, close

from service.core import sequences as sequences_module
from service.core.errors import BadShape, InvalidInput, NotANumber, NotFinite, OutOfRange
from service.core.sequence_forms import FORMS, PROMPT_TOKEN_IDS, flat_sequences, read_form
from service.core.sequences import score_sequences, sequence_summary
from service.core.state import merge_states

LN2 = math.log(2.0)


def answer(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    """The core's answer to a request body (its input form and options) and more options, as the route gives it."""
    fields = {name: value for name, value in body.items() if name in (*FORMS, PROMPT_TOKEN_IDS)}
    options = {**{name: value for name, value in body.items() if name not in fields}, **options}
    confidence = options.pop("confidence", 0.95)
    per_document = options.pop("per_document", True)
    result = score_sequences(read_form(fields), **options)
    return sequence_summary(result, confidence, per_document=per_document)


def stderr_undefined() -> dict[str, Any]:
    return {
        "code": "STDERR_UNDEFINED",
        "message": "standard errors and intervals are null: only 1 document has scored tokens; "
        "a standard error needs at least 2",
        "count": 0,
        "rows": [],
    }


# --- whole answers -----------------------------------------------------------------------------------


def test_two_documents_whole_answer_by_hand() -> None:
    # The arithmetic is written out beside SEQUENCE_ANSWER (tests/whole_answers.py).
    assert answer(SEQUENCE_BODY) == SEQUENCE_ANSWER


def test_words_give_the_word_block_with_the_ratio_errors() -> None:
    # 2 and 3 words: the same units as the tokens, so the token figures again.
    got = answer({**SEQUENCE_BODY}, num_words=[2, 3])
    assert got["word"] == SEQUENCE_ANSWER["token"]
    assert got["state"]["settings"]["words"] is True


def test_bits_are_nats_over_ln2_and_perplexity_stays_unit_free() -> None:
    nats = answer({"token_logprobs": [[-1.0, -2.0], [-0.5]]})
    bits = answer({"token_logprobs": [[-1.0, -2.0], [-0.5]]}, unit="bits")
    assert bits["token"]["cross_entropy"] == close(nats["token"]["cross_entropy"] / LN2)
    assert bits["token"]["stderr"] == close(nats["token"]["stderr"] / LN2)
    assert bits["token"]["perplexity"] == close(nats["token"]["perplexity"])
    assert bits["token"]["perplexity_ci"] == [close(x) for x in nats["token"]["perplexity_ci"]]
    assert bits["per_document"]["nll"] == [close(3.0 / LN2), close(0.5 / LN2)]


def test_an_empty_request_answers_null_aggregates_and_the_empty_warning() -> None:
    got = answer({"token_logprobs": []})
    assert got["warnings"] == [EMPTY_WARNING]
    assert (got["n_sequences"], got["n_documents"], got["n_tokens"], got["n_skipped"]) == (0, 0, 0, 0)
    assert got["token"] == {
        "cross_entropy": None,
        "perplexity": None,
        "stderr": None,
        "ci": None,
        "perplexity_ci": None,
    }
    assert got["document"] == {"cross_entropy": None, "stderr": None, "ci": None}
    assert (got["byte"], got["word"]) == (None, None)
    assert got["per_document"] == {"document_id": [], "n_tokens": [], "nll": [], "perplexity": [], "bits_per_byte": []}


def test_a_perplexity_past_float64_is_null_with_a_warning() -> None:
    # 800 and 1000 nats a token: e^900 overflows; the cross-entropy and its errors do not.
    got = answer({"token_logprobs": [[-800.0], [-1000.0]]}, num_bytes=[1000, 1000])
    assert (got["token"]["cross_entropy"], got["token"]["perplexity"], got["token"]["perplexity_ci"]) == (
        900.0,
        None,
        None,
    )
    assert got["byte"]["perplexity"] == close(math.exp(0.9))
    assert got["warnings"] == [
        {
            "code": "AGGREGATE_OVERFLOW",
            "message": "token.perplexity = e^(cross-entropy in nats) overflows float64 (past 709.78 nats): null",
            "count": 0,
            "rows": [],
        }
    ]


def test_one_document_has_null_errors_with_the_stderr_warning() -> None:
    got = answer({"token_logprobs": [[-1.0, -2.0]]})
    assert got["token"] == {
        "cross_entropy": 1.5,
        "perplexity": close(math.exp(1.5)),
        "stderr": None,
        "ci": None,
        "perplexity_ci": None,
    }
    assert got["warnings"] == [stderr_undefined()]


# --- what is scored ----------------------------------------------------------------------------------


def test_nulls_in_token_logprobs_are_skipped_and_counted() -> None:
    got = answer({"token_logprobs": [[None, -1.0, None, -3.0], [None]]})
    assert (got["n_tokens"], got["n_skipped"], got["per_document"]["nll"]) == (2, 3, [4.0, 0.0])


def test_score_from_and_until_pick_the_window_negative_until_counts_from_the_end() -> None:
    rows = [[-1.0, -2.0, -3.0, -4.0], [-1.0, -2.0, -3.0]]
    assert answer({"token_logprobs": rows}, score_from=1)["per_document"]["nll"] == [9.0, 5.0]
    assert answer({"token_logprobs": rows}, score_until=-1)["per_document"]["nll"] == [6.0, 3.0]
    got = answer({"token_logprobs": rows}, score_from=[2, 0], score_until=[3, -2])
    assert (got["per_document"]["nll"], got["n_tokens"], got["n_skipped"]) == ([3.0, 1.0], 2, 5)


def test_score_from_past_the_end_and_an_empty_sequence_score_nothing() -> None:
    got = answer({"token_logprobs": [[-1.0], [], [-2.0, -1.0]]}, score_from=[5, 0, 1])
    assert got["per_document"]["n_tokens"] == [0, 0, 1]
    assert got["per_document"]["perplexity"] == [None, None, close(math.e)]
    assert (got["n_tokens"], got["n_skipped"]) == (1, 2)


def test_per_document_values_that_are_not_finite_are_null_and_the_rest_exact() -> None:
    # Document 0: 2 tokens, NLL 3, 4 bytes. Document 1: NLL 2 over 0 bytes (no bits per byte). Document 2: a
    # per-token NLL of 9,000 nats, whose perplexity overflows a float64.
    rows = [[-1.0, -2.0], [-2.0], [-9000.0]]
    got = answer({"token_logprobs": rows}, num_bytes=[4, 0, 1])["per_document"]
    assert got["perplexity"] == [close(math.exp(1.5)), close(math.exp(2.0)), None]
    assert got["bits_per_byte"] == [3.0 / 4 / math.log(2.0), None, 9000.0 / math.log(2.0)]
    assert all(type(value) is float for value in got["perplexity"][:2] + got["bits_per_byte"][::2])
    finite = answer({"token_logprobs": rows[:1]}, num_bytes=[4])["per_document"]
    assert (finite["perplexity"], finite["bits_per_byte"]) == ([close(math.exp(1.5))], [3.0 / 4 / math.log(2.0)])


def test_values_up_to_1e_9_above_zero_count_as_zero() -> None:
    assert answer({"token_logprobs": [[1e-9, -1.0]]})["per_document"]["nll"] == [1.0]


def test_the_first_null_of_a_server_form_is_context_not_an_error() -> None:
    got = answer({"completions": [{"token_logprobs": [None, -1.0], "tokens": ["a", "b"]}]})
    assert (got["n_tokens"], got["n_skipped"]) == (1, 1)


# --- documents ----------------------------------------------------------------------------------------


def test_document_ids_are_compared_as_given_in_order_of_first_appearance_and_may_interleave() -> None:
    got = answer({"token_logprobs": [[-1.0], [-2.0], [-4.0], [-8.0]]}, document_ids=["1", 1, "1", 7])
    assert got["per_document"]["document_id"] == ["1", 1, 7]
    assert got["per_document"]["nll"] == [5.0, 2.0, 8.0]
    assert got["n_documents"] == 3


def test_the_windows_of_a_document_give_the_answer_of_the_whole_document() -> None:
    rng = np.random.default_rng(3)
    documents = [(-rng.exponential(2.0, size=n)).tolist() for n in (40, 17, 63)]
    whole_bytes = [181, 70, 260]
    whole = answer({"token_logprobs": documents}, num_bytes=whole_bytes, document_ids=["a", "b", "c"])
    windows, ids, num_bytes = [], [], []
    for doc, values, size in zip("abc", documents, whole_bytes, strict=True):
        cuts = [0, 5, 21, len(values)] if len(values) > 21 else [0, 9, len(values)]
        for i, (start, end) in enumerate(pairwise(cuts)):
            windows.append(values[start:end])
            ids.append(doc)
            num_bytes.append(size if i == 0 else 0)  # the count on the first window, 0 on the rest
    # Interleave the windows of the documents: ids may come in any order.
    order = np.random.default_rng(4).permutation(len(windows))
    split = answer(
        {"token_logprobs": [windows[i] for i in order]},
        num_bytes=[num_bytes[i] for i in order],
        document_ids=[ids[i] for i in order],
    )
    for block in ("token", "byte", "document"):
        assert split[block] == {key: _close_all(value) for key, value in whole[block].items()}
    assert sorted(zip(split["per_document"]["document_id"], split["per_document"]["nll"], strict=True)) == [
        (doc, close(nll)) for doc, nll in zip("abc", whole["per_document"]["nll"], strict=True)
    ]


def _close_all(value: Any) -> Any:
    if isinstance(value, list):
        return [close(v) for v in value]
    return None if value is None else close(value)


# --- every input form of the same tokens ---------------------------------------------------------------

TEXTS = [["The", " cat", " sat", " on", " the", " mat"], ["A", " dog", " barked", "\u00e9"]]
LOGPROBS = [[None, -2.5, -0.75, -1.25, -0.5, -3.0], [None, -4.0, -1.0, -0.125]]
IDS = [[464, 3797, 3332, 319, 262, 2603], [32, 3290, 45290, 2634]]


def _forms() -> dict[str, dict[str, Any]]:
    completions = [
        {"tokens": t, "token_logprobs": lp, "text_offset": list(range(len(t))), "top_logprobs": None}
        for t, lp in zip(TEXTS, LOGPROBS, strict=True)
    ]
    # Chat has no context-free first token: its content starts at the second token, so score_from=1 elsewhere.
    chat = [
        {
            "content": [{"token": "", "logprob": 0.0, "bytes": []}]
            + [
                {"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": []}
                for tok, lp in zip(t[1:], lp_[1:], strict=True)
            ]
        }
        for t, lp_ in zip(TEXTS, LOGPROBS, strict=True)
    ]
    prompt = [
        [
            None,
            *(
                {str(i): {"logprob": lp, "rank": 1, "decoded_token": tok}, "99999": {"logprob": -0.01}}
                for i, lp, tok in zip(ids[1:], lp_[1:], t[1:], strict=True)
            ),
        ]
        for ids, lp_, t in zip(IDS, LOGPROBS, TEXTS, strict=True)
    ]
    tgi = [
        {
            "prefill": [
                {"id": i, "text": tok, "logprob": lp} for i, tok, lp in zip(ids[:3], t[:3], lp_[:3], strict=True)
            ],
            "tokens": [
                {"id": i, "text": tok, "logprob": lp, "special": False}
                for i, tok, lp in zip(ids[3:], t[3:], lp_[3:], strict=True)
            ],
        }
        for ids, t, lp_ in zip(IDS, TEXTS, LOGPROBS, strict=True)
    ]
    return {
        "token_logprobs": {"token_logprobs": LOGPROBS},
        "completions": {"completions": completions},
        "chat": {"chat": chat},
        "prompt_logprobs": {"prompt_logprobs": prompt, "prompt_token_ids": IDS},
        "tgi_details": {"tgi_details": tgi},
    }


@pytest.mark.parametrize("form", list(_forms()))
def test_every_input_form_of_the_same_tokens_gives_the_same_answer(form: str) -> None:
    num_bytes = [len("".join(t[1:]).encode()) for t in TEXTS]
    reference = answer(_forms()["token_logprobs"], num_bytes=num_bytes, score_from=1, document_ids=["x", "y"])
    got = answer(_forms()[form], num_bytes=num_bytes, score_from=1, document_ids=["x", "y"])
    reference.pop("settings"), reference.pop("state")
    assert got.pop("settings")["input_form"] == form
    got.pop("state")
    assert got == reference
    # Without num_bytes, the forms that carry texts count the scored tokens' UTF-8 bytes ("é" is 2).
    measured = answer(_forms()[form], score_from=1)
    if form == "token_logprobs":
        assert measured["byte"] is None
    else:
        assert measured["byte"] == {key: _close_all(value) for key, value in reference["byte"].items()}


def test_a_token_text_with_u_fffd_makes_the_bytes_approximate_with_a_warning() -> None:
    got = answer(
        {
            "completions": [
                {"tokens": ["a", "\ufffd", "b"], "token_logprobs": [None, -1.0, -1.0]},
                {"tokens": ["c"], "token_logprobs": [-1.0]},
            ]
        }
    )
    assert got["settings"]["bytes_source"] == "token_text"
    assert got["warnings"][-1] == {
        "code": "APPROXIMATE_BYTES",
        "message": "1 token texts hold U+FFFD (a UTF-8 character split between tokens): their byte counts, and so "
        "the per-byte figures, are approximate; send num_bytes for exact ones",
        "count": 1,
        "rows": [0],
    }


def test_npz_flat_arrays_give_the_answer_of_the_lists() -> None:
    flat = flat_sequences(np.array([-1.0, -2.0, -0.5, -0.25], dtype=np.float32), np.array([3, 0, 1]))
    lists = read_form({"token_logprobs": [[-1.0, -2.0, -0.5], [], [-0.25]]})
    assert sequence_summary(score_sequences(flat)) == sequence_summary(score_sequences(lists))


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-2e4, 1e-6, allow_nan=False), min_size=1, max_size=30),
    cut=st.integers(0, 30),
    score_from=st.integers(0, 3),
)
def test_extremes_known_beforehand_give_the_answer_and_refusals_of_those_found(
    values: list[float], cut: int, score_from: int
) -> None:
    # An archive's extremes are taken beside its CRC-32 (npz_archive.NpzArchive.read): the core then does not look.
    array = np.array(values)
    lengths = np.array([min(cut, len(values)), len(values) - min(cut, len(values))])
    extremes = (float(array.min()), float(array.max()))
    outcomes = []
    for known in (None, extremes):
        try:
            outcomes.append(
                sequence_summary(score_sequences(flat_sequences(array, lengths, extremes=known), score_from=score_from))
            )
        except OutOfRange as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


def test_flat_arrays_have_their_extremes_found_once_and_the_core_looks_no_more() -> None:
    # Two values whose sum overflows float64 are finite each: found by their extremes, not by a sum; out of the
    # window they are no error, and the core scores the last position alone.
    flat = flat_sequences(np.array([-1e308, -1e308, -1.0]), np.array([3]))
    assert flat.extremes == (-1e308, -1.0)
    assert flat.missing is not None
    assert flat.missing.tolist() == []
    assert sequence_summary(score_sequences(flat, score_from=2))["token"]["cross_entropy"] == 1.0
    # Extremes given wrong (NaN, with every value finite): the core finds them itself, and the answer is the same.
    values, lengths = np.array([-1.0, -2.0, -0.5]), np.array([2, 1])
    wrong = flat_sequences(values, lengths, extremes=(math.nan, math.nan))
    assert wrong.extremes is None
    assert sequence_summary(score_sequences(wrong)) == sequence_summary(
        score_sequences(flat_sequences(values, lengths))
    )


class _Recording(Executor):
    """Runs what it is given at once, noting the arguments (a helper that is never busy); ``busy``: never starts
    it, so that the caller calls it off and does it itself."""

    def __init__(self, busy: bool = False) -> None:
        self.busy = busy
        self.calls: list[tuple[Any, ...]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls.append(args)
        future: Future[Any] = Future()
        if not self.busy:
            future.set_result(fn(*args, **kwargs))
        return future


def _bits(values: np.ndarray) -> list[int]:
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64).tolist()


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(st.one_of(st.floats(-50.0, 1e-9), st.none()), max_size=12), min_size=0, max_size=12),
    score_from=st.integers(0, 3),
    score_until=st.one_of(st.none(), st.integers(-3, 12)),
    busy=st.booleans(),
)
def test_sums_split_for_a_helper_are_the_single_thread_sums_bit_for_bit(
    rows: list[list[float | None]], score_from: int, score_until: int | None, busy: bool
) -> None:
    # Every sequence lies whole in one half, and reduceat sums each sequence on its own: no rounding moves.
    sequences = read_form({"token_logprobs": rows})
    alone = score_sequences(sequences, score_from=score_from, score_until=score_until)
    helper = _Recording(busy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sequences_module, "SPLIT_MIN_POSITIONS", 0)
        helped = score_sequences(sequences, score_from=score_from, score_until=score_until, helper=helper)
    assert _bits(helped.document_nll) == _bits(alone.document_nll)
    assert helped.document_tokens.tolist() == alone.document_tokens.tolist()
    splittable = len(rows) > 1 and 0 < int(np.searchsorted(sequences.offsets, sequences.offsets[-1] // 2)) < len(rows)
    assert len(helper.calls) == int(splittable)


def test_a_large_batch_gives_the_second_half_of_its_sequences_to_the_helper() -> None:
    # 2,200 sequences of 1,000 log-probabilities (past SPLIT_MIN_POSITIONS, 2²¹), with a window: the helper sums
    # sequences 1,100 on (from position 1,100,000, the sequence boundary at the middle), each NLL as alone.
    values = -np.random.default_rng(5).exponential(2.5, 2_200_000)
    sequences = flat_sequences(values, np.full(2_200, 1_000))
    helper = _Recording()
    helped = score_sequences(sequences, score_from=1, helper=helper)
    alone = score_sequences(sequences, score_from=1)
    assert _bits(helped.document_nll) == _bits(alone.document_nll)
    (arguments,) = helper.calls
    part, offsets = arguments[0], arguments[1]
    assert part.shape == (1_100_000,)
    assert np.shares_memory(part, values)  # a view: no copy of the half
    assert offsets.tolist() == list(range(0, 1_100_001, 1_000))
    # Below the threshold the helper is not asked.
    small = _Recording()
    score_sequences(flat_sequences(values[:10_000], np.full(10, 1_000)), helper=small)
    assert small.calls == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_extremes_that_are_not_finite_leave_the_core_to_find_the_bad_value(bad: float) -> None:
    array = np.array([-1.0, -2.0, bad])
    extremes = (float(np.minimum.reduce(array)), float(np.maximum.reduce(array)))
    with pytest.raises(NotFinite) as raised:
        flat_sequences(array, np.array([2, 1]), extremes=extremes)
    assert raised.value.where == "token_logprobs sequence 1, position 0"


# --- refusals: each names the sequence and the 0-based position ------------------------------------------


@pytest.mark.parametrize(
    ("fields", "options", "error", "where"),
    [
        ({"token_logprobs": [[-1.0], [-1.0, float("nan")]]}, {}, NotFinite, "token_logprobs sequence 1, position 1"),
        ({"token_logprobs": [[float("-inf")]]}, {}, NotFinite, "token_logprobs sequence 0, position 0"),
        # A NaN among nulls is the caller's NaN, not a null: refused where it is.
        (
            {"token_logprobs": [[None, -1.0], [None, float("nan"), None]]},
            {},
            NotFinite,
            "token_logprobs sequence 1, position 1",
        ),
        (
            {"token_logprobs": [[None, None], [float("inf"), None]]},
            {},
            NotFinite,
            "token_logprobs sequence 1, position 0",
        ),
        ({"token_logprobs": [[-1.0, 0.5]]}, {}, OutOfRange, "token_logprobs sequence 0, position 1"),
        ({"token_logprobs": [[-1.0, 2e-9]]}, {}, OutOfRange, "token_logprobs sequence 0, position 1"),
        ({"token_logprobs": [[-1.0], [-9999.0]]}, {}, OutOfRange, "token_logprobs sequence 1, position 0"),
        ({"token_logprobs": [[-1.0, -1e4]]}, {}, OutOfRange, "token_logprobs sequence 0, position 1"),
        ({"token_logprobs": [[-1.0, "x"]]}, {}, NotANumber, "token_logprobs sequence 0, position 1"),
        ({"token_logprobs": [[-1.0, True]]}, {}, NotANumber, "token_logprobs sequence 0, position 1"),
        (
            {"completions": [{"token_logprobs": [None, None, -1.0]}]},
            {},
            InvalidInput,
            "completions sequence 0, position 1",
        ),
        ({"chat": [{"content": [{"token": "a", "logprob": None}]}]}, {}, InvalidInput, "chat sequence 0, position 0"),
        (
            {"prompt_logprobs": [[None, {"5": {"logprob": -1.0}}]], "prompt_token_ids": [[1, 6]]},
            {},
            InvalidInput,
            "prompt_logprobs sequence 0, position 1",
        ),
        ({"token_logprobs": [[-1.0]]}, {"document_ids": ["a", "b"]}, BadShape, "document_ids"),
        ({"token_logprobs": [[-1.0]]}, {"num_bytes": [1, 2]}, BadShape, "num_bytes"),
        ({"token_logprobs": [[-1.0]]}, {"num_words": []}, BadShape, "num_words"),
        ({"token_logprobs": [[-1.0]]}, {"score_from": [0, 0]}, BadShape, "score_from"),
        ({"token_logprobs": [[-1.0]]}, {"score_until": [1, 1]}, BadShape, "score_until"),
        ({"token_logprobs": [[-1.0], [-2.0]]}, {"score_from": [0, -1]}, OutOfRange, "score_from sequence 1"),
        ({"token_logprobs": [[-1.0]]}, {"score_from": -1}, OutOfRange, "score_from"),
        ({"token_logprobs": [[-1.0], [-1.0]]}, {"document_ids": ["a", None]}, NotANumber, "document_ids sequence 1"),
        ({"token_logprobs": [[-1.0]]}, {"document_ids": [2**63]}, OutOfRange, "document_ids sequence 0"),
        ({}, {}, InvalidInput, "token_logprobs"),
        ({"token_logprobs": [[-1.0]], "chat": []}, {}, InvalidInput, "chat"),
    ],
)
def test_each_refusal_names_the_sequence_and_position(
    fields: dict[str, Any], options: dict[str, Any], error: type[Exception], where: str
) -> None:
    with pytest.raises(error) as raised:
        score_sequences(read_form(fields), **options)
    assert isinstance(raised.value, InvalidInput)
    assert raised.value.where == where


def test_minus_9999_outside_the_scored_window_is_no_error() -> None:
    assert answer({"token_logprobs": [[-9999.0, -1.0]]}, score_from=1)["per_document"]["nll"] == [1.0]


def test_npz_errors_name_the_sequence_and_position_not_the_flat_index() -> None:
    with pytest.raises(NotFinite) as raised:
        flat_sequences(np.array([-1.0, -2.0, np.nan]), np.array([2, 1]))
    assert raised.value.where == "token_logprobs sequence 1, position 0"
    with pytest.raises(BadShape, match="the lengths sum to 2 but token_logprobs holds 3 values"):
        flat_sequences(np.array([-1.0, -2.0, -3.0]), np.array([1, 1]))


# --- the ratio standard error against its formula, computed directly ------------------------------------

documents = st.lists(
    st.tuples(
        st.lists(st.floats(-30.0, 0.0, allow_nan=False), min_size=0, max_size=12),
        st.integers(0, 60),
    ),
    min_size=0,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_ratio_standard_error_is_its_formula_computed_directly(docs: list[tuple[list[float], int]]) -> None:
    rows = [values for values, _ in docs]
    sizes = [size for _, size in docs]
    got = answer({"token_logprobs": rows}, num_bytes=sizes)
    for block, units in (("token", [len(values) for values in rows]), ("byte", sizes)):
        kept = [(-sum(values), t) for values, t in zip(rows, units, strict=True) if t > 0]
        n = len(kept)
        total_s, total_t = sum(s for s, _ in kept), sum(t for _, t in kept)
        if n == 0:
            assert got[block]["cross_entropy"] is None
            continue
        ratio = total_s / total_t
        assert got[block]["cross_entropy"] == pytest.approx(ratio, rel=1e-12, abs=1e-15)
        if n < 2:
            assert got[block]["stderr"] is None
            continue
        direct = math.sqrt(n / (n - 1) * sum((s - ratio * t) ** 2 for s, t in kept)) / total_t
        assert got[block]["stderr"] == pytest.approx(direct, rel=1e-7, abs=1e-12)


def test_ratio_standard_error_matches_statsmodels_linearisation() -> None:
    # The ratio estimator's SE is the HC1 standard error of the mean of the linearised values
    # zᵢ = (Sᵢ − L·Tᵢ)/T̄ (a mean over documents: statsmodels' OLS on a constant).
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(11)
    rows = [(-rng.exponential(1.5, size=int(n))).tolist() for n in rng.integers(1, 50, size=30)]
    got = answer({"token_logprobs": rows})
    s = np.array([-sum(r) for r in rows])
    t = np.array([len(r) for r in rows], dtype=float)
    ratio = s.sum() / t.sum()
    z = (s - ratio * t) / t.mean()
    fit = sm.OLS(z, np.ones_like(z)).fit(cov_type="HC1")
    assert got["token"]["stderr"] == pytest.approx(float(fit.bse[0]), rel=1e-10)


# --- states -------------------------------------------------------------------------------------------


def test_merged_states_answer_as_one_request_over_all_the_documents() -> None:
    rng = np.random.default_rng(5)
    rows = [(-rng.exponential(1.0, size=int(n))).tolist() for n in rng.integers(0, 30, size=40)]
    sizes = rng.integers(0, 200, size=40).tolist()
    words = rng.integers(1, 40, size=40).tolist()
    whole = answer({"token_logprobs": rows}, num_bytes=sizes, num_words=words, unit="bits", confidence=0.9)
    states = [
        answer({"token_logprobs": rows[a:b]}, num_bytes=sizes[a:b], num_words=words[a:b], unit="bits")["state"]
        for a, b in ((0, 7), (7, 8), (8, 8), (8, 30), (30, 40))
    ]
    merged = merge_states(states, 0.9)
    assert merged.pop("state")["accumulators"]["token"]["n"] == whole["state"]["accumulators"]["token"]["n"]
    assert merged.pop("settings") == {"unit": "bits", "bytes_source": "given", "words": True, "confidence": 0.9}
    for key in ("n_sequences", "n_documents", "n_tokens", "n_skipped", "unit", "warnings"):
        assert merged[key] == whole[key]
    for block in ("token", "byte", "word", "document"):
        for key, value in whole[block].items():
            tolerance = 1e-9 if key in ("stderr", "ci", "perplexity_ci") else 1e-12
            expected = [pytest.approx(v, rel=tolerance) for v in value] if isinstance(value, list) else value
            if isinstance(value, float):
                expected = pytest.approx(value, rel=tolerance)
            assert merged[block][key] == expected, (block, key)


def test_states_of_other_settings_do_not_merge() -> None:
    bits = answer({"token_logprobs": [[-1.0]]}, unit="bits")["state"]
    nats = answer({"token_logprobs": [[-1.0]]})["state"]
    with pytest.raises(InvalidInput, match=r"states\[1\]\.settings\.unit: incompatible with states\[0\]"):
        merge_states([bits, nats])


def test_a_forged_state_is_refused_naming_its_path() -> None:
    state = answer({"token_logprobs": [[-1.0], [-2.0]]})["state"]
    state["accumulators"]["token"]["q"] = -1.0
    with pytest.raises(InvalidInput, match=r"states\[0\]\.accumulators\.token\.q"):
        merge_states([state])


def test_a_forged_residual_sum_is_refused() -> None:
    state = answer({"token_logprobs": [[-1.0], [-2.0, -1.0]]})["state"]
    state["accumulators"]["token"]["u"] = 10.0
    with pytest.raises(InvalidInput, match=r"states\[0\]\.accumulators\.token\.u: u² exceeds r·q"):
        merge_states([state])


def test_a_forged_token_nll_past_what_refused_log_probabilities_allow_is_refused() -> None:
    state = answer({"token_logprobs": [[-1.0], [-2.0, -1.0]]})["state"]
    state["accumulators"]["token"]["s"] = 1e308  # 3 tokens: at most 3e4 nats, since log p ≤ −1e4 is refused
    with pytest.raises(InvalidInput, match=r"states\[0\]\.accumulators\.token\.s: s = 1e\+308 nats for 3 tokens"):
        merge_states([state])


@pytest.mark.parametrize(
    "sizes",
    [[1, 2**62], np.array([1, 2**63], dtype=np.uint64), np.array([1, -(2**62)], dtype=np.int64)],
    ids=["json", "npz uint64 past int64", "npz int64"],
)
def test_per_sequence_integers_past_2_to_the_62_are_too_large_in_json_and_npz_alike(sizes: Any) -> None:
    with pytest.raises(NotANumber, match=r"num_bytes sequence 1: .* is too large: per-sequence integers must be below"):
        answer({"token_logprobs": [[-1.0], [-2.0]]}, num_bytes=sizes)


def test_an_empty_state_merges_with_any_as_the_identity() -> None:
    empty = answer({"token_logprobs": []}, unit="hartleys")["state"]
    full = answer({"token_logprobs": [[-1.0], [-2.0, -1.0]]})
    merged = merge_states([empty, full["state"]])
    assert merged["state"] == full["state"]
    assert merged["token"] == full["token"]
