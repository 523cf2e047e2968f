"""The ratio standard error's numerical stability (issue 16 §1, round 2): residuals, not co-moments.

Documents that all have the same NLL per unit have SE 0: computed from co-moments (C_SS − 2L·C_ST + L²·C_TT)
it was rounding of the size of C_SS (7.8e-10 relative); from the residuals, and merged by the exact shift of
``sequence_totals``, it stays at rounding of the residuals (≤ 1e-15 relative). Under hypothesis, states of
random splits of random documents merge to the direct computation of the formula over all of them.
"""

import math
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.sequence_forms import read_form
from service.core.sequence_totals import RatioTotals
from service.core.sequences import score_sequences, sequence_summary
from service.core.state import merge_states


def answer(rows: list[list[float]], num_bytes: list[int]) -> dict[str, Any]:
    return sequence_summary(score_sequences(read_form({"token_logprobs": rows}), num_bytes=num_bytes))


def split(rows: list[Any], cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [0, *sorted({min(cut, len(rows)) for cut in cuts}), len(rows)]
    return list(pairwise(bounds))


#: NLLs per token; the co-moments left 7e-10 to 1.4e-9 relative for some of them in one unit or the other.
RATIOS = (2.302585, 0.1, 1.7, 3.3, 0.731)


def same_ratio_documents(nll: float, seed: int) -> tuple[list[list[float]], list[int]]:
    """200 documents of 1–1000 tokens of −nll each, 3 bytes a token: every ratio is the same."""
    lengths = np.random.default_rng(seed).integers(1, 1000, size=200)
    return [[-nll] * int(n) for n in lengths], [3 * int(n) for n in lengths]


@pytest.mark.parametrize(("nll", "seed"), [(nll, seed) for seed, nll in enumerate(RATIOS)])
def test_documents_of_one_ratio_have_no_standard_error_in_one_request(nll: float, seed: int) -> None:
    rows, sizes = same_ratio_documents(nll, seed)
    got = answer(rows, sizes)
    for block, ratio in (("token", nll), ("byte", nll / 3)):
        assert got[block]["cross_entropy"] == pytest.approx(ratio, rel=1e-14)
        assert got[block]["stderr"] <= 1e-15 * ratio, block


@pytest.mark.parametrize(("nll", "seed"), [(nll, seed) for seed, nll in enumerate(RATIOS)])
def test_documents_of_one_ratio_have_no_standard_error_merged_from_shards(nll: float, seed: int) -> None:
    rows, sizes = same_ratio_documents(nll, seed)
    states = [answer(rows[a:b], sizes[a:b])["state"] for a, b in split(rows, [1, 13, 14, 90, 150])]
    merged = merge_states(states)
    for block, ratio in (("token", nll), ("byte", nll / 3)):
        assert merged[block]["cross_entropy"] == pytest.approx(ratio, rel=1e-14)
        assert merged[block]["stderr"] <= 1e-15 * ratio, block


def test_the_shift_is_exact_for_documents_with_distinct_ratios() -> None:
    # S = (1, 4, 2, 9), T = (1, 2, 4, 3): merged from {1, 2} and {3, 4} vs one pass over all four.
    s, t = np.array([1.0, 4.0, 2.0, 9.0]), np.array([1, 2, 4, 3])
    whole = RatioTotals.from_documents(s, t)
    merged = RatioTotals.from_documents(s[:2], t[:2]).merge(RatioTotals.from_documents(s[2:], t[2:]))
    # L = 16/10 = 1.6; residuals (−0.6, 0.8, −4.4, 4.2): R = 0.36 + 0.64 + 19.36 + 17.64 = 38,
    # U = −0.6 + 1.6 − 17.6 + 12.6 = −4, Q = 1 + 4 + 16 + 9 = 30.
    assert (whole.n, whole.s, whole.t, whole.q) == (merged.n, merged.s, merged.t, merged.q) == (4, 16.0, 10.0, 30.0)
    assert [whole.r, merged.r] == [pytest.approx(38.0, rel=1e-15)] * 2
    assert [whole.u, merged.u] == [pytest.approx(-4.0, rel=1e-14)] * 2
    assert merged.stderr == pytest.approx(math.sqrt(4 / 3 * 38.0) / 10.0, rel=1e-15)


documents = st.lists(
    st.tuples(st.lists(st.floats(-30.0, 0.0, allow_nan=False), max_size=12), st.integers(0, 60)),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(documents, st.lists(st.integers(0, 25), max_size=6), st.floats(0.5, 8.0))
def test_states_of_random_splits_merge_to_the_direct_computation(
    docs: list[tuple[list[float], int]], cuts: list[int], scale: float
) -> None:
    # Half the documents are given the ratio of the first, scaled: near-equal ratios are the hard case.
    rows = [values if i % 2 or not docs[0][0] else [docs[0][0][0]] * len(values) for i, (values, _) in enumerate(docs)]
    sizes = [size if i % 2 else max(1, round(scale * len(values))) for i, (values, size) in enumerate(docs)]
    states = [answer(rows[a:b], sizes[a:b])["state"] for a, b in split(rows, cuts)]
    merged = merge_states(states)
    for block, units in (("token", [len(values) for values in rows]), ("byte", sizes)):
        kept = [(-math.fsum(values), t) for values, t in zip(rows, units, strict=True) if t > 0]
        n = len(kept)
        if n == 0:
            assert merged[block]["cross_entropy"] is None
            continue
        total_t = sum(t for _, t in kept)
        ratio = math.fsum(s for s, _ in kept) / total_t
        assert merged[block]["cross_entropy"] == pytest.approx(ratio, rel=1e-12, abs=1e-15)
        if n < 2:
            assert merged[block]["stderr"] is None
            continue
        direct = math.sqrt(n / (n - 1) * math.fsum((s - ratio * t) ** 2 for s, t in kept)) / total_t
        assert merged[block]["stderr"] == pytest.approx(direct, rel=1e-9, abs=1e-13 * max(ratio, 1e-3))
