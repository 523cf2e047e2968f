"""``compat: "scipy"`` against ``scipy.stats.entropy`` (1.17): SciPy's TestEntropy cases and hypothesis inputs.

Each row is a distribution (SciPy's ``axis=1``): the target row pk, the prediction row qk; both are
divided by their sums, nothing is clipped, CE = H + KL, and ``unit`` is SciPy's ``base``.
"""

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.core import InvalidOption, MulticlassOptions, OutOfRange, Unit, WarningCode
from service.core.compat import score_binary_preset, score_multiclass_preset

stats = pytest.importorskip("scipy.stats", reason="SciPy is a test dependency")


def _entropy(pk: Any, qk: Any, **options: Any) -> Any:
    return score_multiclass_preset("scipy", pk, qk, options=MulticlassOptions(**options))


def test_entropy_positive() -> None:
    pk, qk = [[0.5, 0.2, 0.3]], [[0.1, 0.25, 0.65]]
    assert _entropy(pk, pk).mean.kl_divergence == 0.0
    assert _entropy(pk, qk).mean.kl_divergence == pytest.approx(stats.entropy(pk[0], qk[0]), rel=1e-12)


def test_entropy_base() -> None:
    """base=2 on 16 equal weights: 4 bits; KL in nats / KL in bits = ln 2."""
    pk = [[1.0] * 16]
    assert _entropy(pk, pk, unit="bits").mean.entropy == pytest.approx(4.0, rel=1e-12)
    qk = [[2.0] * 8 + [1.0] * 8]
    nats = _entropy(pk, qk).mean.kl_divergence
    bits = _entropy(pk, qk, unit=Unit.BITS).mean.kl_divergence
    assert nats / bits == pytest.approx(np.log(2), rel=1e-12)
    assert bits == pytest.approx(stats.entropy(pk[0], qk[0], base=2), rel=1e-12)


def test_entropy_zero() -> None:
    """entropy([0, 1, 2]) = 0.63651416829481278: the target is divided by its sum."""
    assert _entropy([[0.0, 1.0, 2.0]], [[0.0, 1.0, 2.0]]).mean.entropy == pytest.approx(0.63651416829481278, rel=1e-12)


def test_entropy_2d_and_zeros() -> None:
    """test_entropy_2d (transposed: SciPy's default axis is 0, a row here is a distribution): [0.1933259,
    0.18609809]; test_entropy_2d_zero: a zero q under a positive p is +inf (NON_FINITE), then 0.17403988
    when that p is 0 too."""
    pk = np.array([[0.1, 0.2], [0.6, 0.3], [0.3, 0.5]]).T
    qk = np.array([[0.2, 0.1], [0.3, 0.6], [0.5, 0.3]]).T
    np.testing.assert_allclose(_entropy(pk, qk).per_sample.kl_divergence, [0.1933259, 0.18609809], rtol=1e-7)
    qk_zero = np.array([[0.0, 0.1], [0.3, 0.6], [0.5, 0.3]]).T
    infinite = _entropy(pk, qk_zero)
    assert infinite.per_sample.kl_divergence.tolist()[0] == np.inf
    assert infinite.per_sample.kl_divergence[1] == pytest.approx(0.18609809, rel=1e-7)
    assert [w.code for w in infinite.warnings] == [WarningCode.RENORMALIZED, WarningCode.NON_FINITE]
    pk_zero = np.array([[0.0, 0.2], [0.6, 0.3], [0.3, 0.5]]).T
    np.testing.assert_allclose(_entropy(pk_zero, qk_zero).per_sample.kl_divergence, [0.17403988, 0.18609809], rtol=1e-7)


def test_entropy_nondefault_axis() -> None:
    """test_entropy_base_2d_nondefault_axis [0.63651417, 0.63651417, 0.66156324] and
    test_entropy_2d_nondefault_axis [0.23104906, 0.23104906, 0.12770641] (axis=1: rows)."""
    pk = [[0.1, 0.2], [0.6, 0.3], [0.3, 0.5]]
    qk = [[0.2, 0.1], [0.3, 0.6], [0.5, 0.3]]
    result = _entropy(pk, qk)
    np.testing.assert_allclose(result.per_sample.entropy, [0.63651417, 0.63651417, 0.66156324], rtol=1e-7)
    np.testing.assert_allclose(result.per_sample.kl_divergence, [0.23104906, 0.23104906, 0.12770641], rtol=1e-7)
    np.testing.assert_allclose(
        result.per_sample.cross_entropy, result.per_sample.entropy + result.per_sample.kl_divergence
    )


def test_reference_rows_of_scipy() -> None:
    """Row 5 (a prediction row summing to 0.6): 0.693147; row 6 (a target summing to 2): 0.693147; row 19:
    0.691989 bits; row 1 (the true class at 0): +inf."""
    assert _entropy([1], [[0.2, 0.3, 0.1]]).mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)
    assert _entropy([[0.0, 2.0, 0.0]], [[0.2, 0.5, 0.3]]).mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)
    bits = _entropy([1], [[0.228, 0.619, 0.153]], unit="bits")
    assert bits.mean.cross_entropy == pytest.approx(0.691989, abs=1e-6)
    assert bits.settings["epsilon"] == 0.0
    assert bits.settings["epsilon_applies"] is False
    assert _entropy([0], [[0.0, 0.5, 0.5]]).mean.cross_entropy == np.inf
    assert _entropy([0], [[0.0, 0.5, 0.5]]).per_sample.cross_entropy.tolist() == [np.inf]


def test_binary_is_the_entropy_of_each_bernoulli_pair() -> None:
    y, q = [[0.0, 1.0], [0.3, 0.5]], [[0.2, 0.9], [0.4, 0.5]]
    result = score_binary_preset("scipy", y, q)
    expected = [
        np.mean(
            [stats.entropy([1 - a, a], [1 - b, b]) + stats.entropy([1 - a, a]) for a, b in zip(ys, qs, strict=True)]
        )
        for ys, qs in zip(y, q, strict=True)
    ]
    np.testing.assert_allclose(result.per_sample.cross_entropy, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"options": MulticlassOptions(prediction_type="logits")}, "prediction_type"),
        ({"options": MulticlassOptions(label_smoothing=0.1)}, "label_smoothing"),
        ({"class_weights": [1.0, 2.0]}, "class_weights"),
        ({"options": MulticlassOptions(normalization="warn"), "given": {"normalization"}}, "normalization"),
        ({"options": MulticlassOptions(epsilon=1e-7), "given": {"epsilon"}}, "epsilon"),
    ],
)
def test_options_scipy_cannot_honour_are_refused_naming_both(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidOption, match=f'^{option}: cannot be honoured with compat "scipy"'):
        score_multiclass_preset("scipy", [0], [[0.5, 0.5]], **kwargs)


def test_a_negative_probability_is_refused() -> None:
    with pytest.raises(OutOfRange, match="negative"):
        _entropy([0], [[-0.1, 1.1]])


@st.composite
def _pairs(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 5))
    positive = st.floats(1e-3, 10)
    return (
        draw(hnp.arrays(np.float64, (n, c), elements=positive)),
        draw(hnp.arrays(np.float64, (n, c), elements=positive)),
    )


@settings(max_examples=80, deadline=None)
@given(_pairs())
def test_any_rows_equal_scipy_entropy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pk, qk = pair
    result = _entropy(pk, qk)
    np.testing.assert_allclose(result.per_sample.kl_divergence, stats.entropy(pk, qk, axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.per_sample.entropy, stats.entropy(pk, axis=1), rtol=1e-12)
    assert result.mean.kl_divergence == pytest.approx(
        float(np.mean(stats.entropy(pk, qk, axis=1))), rel=1e-12, abs=1e-15
    )
