"""Standard errors, intervals and paired differences (issue 14), checked against SciPy and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from service.core import BinaryOptions, InvalidInput, InvalidOption, MulticlassOptions, score_binary, score_multiclass
from service.core.contract import UNCERTAINTY_OPTIONS
from service.core.errors import BadShape
from service.core.intervals import check_confidence, interval, normal_quantile, two_sided_p_value
from service.core.statistics import cluster_codes, weighted_correlation, weighted_standard_error
from service.core.uncertainty import STDERR_UNDEFINED, paired_difference, uncertainty

CONFIDENCE_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)
REFERENCE = [[0.228, 0.619, 0.153]]


def _statsmodels_se(values: np.ndarray, weights: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The HC1 (or CR1) standard error of the constant in WLS(ℓ, 1, weights=w), over the rows with w > 0."""
    keep = weights > 0
    model = sm.WLS(values[keep], np.ones(int(keep.sum())), weights=weights[keep])
    if groups is None:
        fit = model.fit(cov_type="HC1")
    else:
        fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups[keep]})
    return float(fit.bse[0])


# Φ⁻¹


def test_normal_quantile_agrees_with_scipy_ndtri_to_1e_12() -> None:
    probabilities = np.concatenate(
        [
            np.logspace(-300, -1, 600),
            np.linspace(0.001, 0.999, 2001),
            1.0 - np.logspace(-16, -1, 300),
            [(1.0 + c) / 2.0 for c in CONFIDENCE_LEVELS],
            [(1.0 - c) / 2.0 for c in CONFIDENCE_LEVELS],
            [1e-300, 0.075, 0.925, 0.5, 1.0 - 1e-16],
        ]
    )
    ours = np.array([normal_quantile(float(p)) for p in probabilities])
    reference = special.ndtri(probabilities)
    assert np.all(np.abs(ours - reference) <= 1e-12 * np.maximum(1.0, np.abs(reference)))


@pytest.mark.parametrize("confidence", CONFIDENCE_LEVELS)
def test_interval_quantile_at_each_confidence_level_matches_ndtri(confidence: float) -> None:
    z = normal_quantile((1.0 + confidence) / 2.0)
    assert abs(z - special.ndtri((1.0 + confidence) / 2.0)) <= 1e-12
    assert interval(1.0, 0.5, confidence) == (1.0 - z * 0.5, 1.0 + z * 0.5)


@given(st.floats(min_value=1e-300, max_value=1.0 - 1e-16))
def test_normal_quantile_agrees_with_ndtri_anywhere(p: float) -> None:
    reference = float(special.ndtri(p))
    assert abs(normal_quantile(p) - reference) <= 1e-12 * max(1.0, abs(reference))


def test_normal_quantile_ends_and_refusals() -> None:
    assert normal_quantile(0.0) == -math.inf
    assert normal_quantile(1.0) == math.inf
    assert normal_quantile(0.5) == 0.0
    for bad in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match="probability in"):
            normal_quantile(bad)


@pytest.mark.parametrize("z", [0.0, 0.5, -1.96, 3.0, -8.0, 40.0])
def test_two_sided_p_value_is_twice_the_normal_tail(z: float) -> None:
    assert two_sided_p_value(z) == pytest.approx(2.0 * stats.norm.sf(abs(z)), rel=1e-12, abs=1e-300)


# The standard error against statsmodels


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=30.0),
            st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e3)),
            st.integers(min_value=0, max_value=5),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_standard_errors_equal_statsmodels_hc1_and_cluster(rows: list[tuple[float, float, int]]) -> None:
    values, weights, groups = (np.array(column) for column in zip(*rows, strict=True))
    groups = groups.astype(np.int64)
    keep = weights > 0
    plain = weighted_standard_error(values, weights)
    clustered = weighted_standard_error(values, weights, groups)
    n, n_clusters = int(keep.sum()), len(set(groups[keep].tolist()))
    assert (plain.n, clustered.n, clustered.n_clusters) == (n, n, n_clusters)
    if n < 2:
        assert plain.stderr is None
        assert clustered.stderr is None
        assert plain.reason is not None
        return
    assert plain.mean == pytest.approx(np.average(values[keep], weights=weights[keep]), rel=1e-12, abs=1e-12)
    spread = float(np.ptp(values[keep]))
    if spread == 0:
        assert plain.stderr == 0.0  # exactly, where statsmodels leaves rounding noise of 1e-15
        return
    # The references lose digits to cancellation where the error is tiny next to the values (statsmodels'
    # residuals, np.cov's centred products); compare where they keep 1e-9 of them.
    scale = max(1.0, float(np.abs(values[keep]).max()))
    assume(spread > 1e-6 and plain.stderr is not None and plain.stderr > 1e-6 * scale)
    assert plain.stderr == pytest.approx(_statsmodels_se(values, weights), rel=1e-9, abs=1e-15)
    if n_clusters < 2:
        assert clustered.stderr is None
        assert clustered.reason is not None
        assert "1 cluster" in clustered.reason
    else:
        assert clustered.stderr is not None
        if clustered.stderr > 1e-6 * scale:  # cluster sums can cancel too: compare where the reference keeps 1e-9
            expected = _statsmodels_se(values, weights, groups)
            assert clustered.stderr == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_unweighted_standard_error_is_the_sample_deviation_over_root_n() -> None:
    values = np.array([0.2, 1.7, 0.4, 3.1, 0.9])
    expected = np.std(values, ddof=1) / np.sqrt(5)
    assert weighted_standard_error(values, np.ones(5)).stderr == pytest.approx(expected, rel=1e-14)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=2, max_value=40).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0.01, 0.98), min_size=n, max_size=n),
            st.lists(st.floats(0.01, 0.98), min_size=n, max_size=n),
            st.lists(st.sampled_from([0, 1, 2, -100]), min_size=n, max_size=n),
            st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n),
            st.lists(st.integers(0, 6), min_size=n, max_size=n),
        )
    )
)
def test_uncertainty_of_a_scored_batch_equals_statsmodels(
    batch: tuple[list[float], list[float], list[int], list[float], list[int]],
) -> None:
    first, second, labels, sample_weights, groups = batch
    predictions = np.array([[a, (1 - a) * b, (1 - a) * (1 - b)] for a, b in zip(first, second, strict=True)])
    class_weights = [1.0, 2.0, 0.5]
    options = MulticlassOptions(ignore_index=-100, unit="bits")
    result = score_multiclass(
        labels, predictions, class_weights=class_weights, sample_weights=sample_weights, options=options
    )
    spread = uncertainty(result, 0.9, groups)
    label_array = np.array(labels)
    scored = label_array != -100
    weights = np.where(scored, np.array(sample_weights) * np.array(class_weights)[np.where(scored, label_array, 0)], 0)
    keep = weights > 0
    n, n_clusters = int(keep.sum()), len(set(np.array(groups)[keep].tolist()))
    assert spread.n_clusters == n_clusters
    ce_bits = -np.log2(predictions[np.arange(len(labels)), np.where(scored, label_array, 0)])
    correct = (predictions.argmax(axis=1) == label_array).astype(float)
    if n < 2 or n_clusters < 2:
        assert spread.stderr.cross_entropy is None
        assert spread.ci.perplexity is None
        assert [w.code for w in spread.warnings] == [STDERR_UNDEFINED]
        return
    assert spread.warnings == ()
    expected = _statsmodels_se(ce_bits, weights, np.array(groups))
    assert spread.stderr.cross_entropy == pytest.approx(expected, rel=1e-9)
    assert spread.stderr.kl_divergence == spread.stderr.cross_entropy
    assert spread.stderr.entropy == 0.0
    if np.ptp(correct[keep]) > 0:
        assert spread.stderr.accuracy == pytest.approx(_statsmodels_se(correct, weights, np.array(groups)), rel=1e-9)
    z = special.ndtri(0.95)
    assert result.mean.cross_entropy is not None
    assert spread.ci.cross_entropy is not None
    low, high = spread.ci.cross_entropy
    assert low == pytest.approx(result.mean.cross_entropy - z * expected, rel=1e-9, abs=1e-12)
    assert high == pytest.approx(result.mean.cross_entropy + z * expected, rel=1e-9, abs=1e-12)
    assert spread.ci.perplexity == pytest.approx((2.0**low, 2.0**high), rel=1e-9)


def test_multi_label_rows_count_their_mean_over_labels_and_accuracy_the_fraction_right() -> None:
    labels = [[1, 0], [0, 0], [1, 1], [0, 1]]
    predictions = [[0.9, 0.2], [0.6, 0.1], [0.3, 0.8], [0.2, 0.4]]
    result = score_binary(labels, predictions, sample_weights=[1.0, 2.0, 0.5, 1.5])
    assert result.correct.tolist() == [1.0, 0.5, 0.5, 0.5]
    spread = uncertainty(result)
    weights = np.array([1.0, 2.0, 0.5, 1.5])
    assert spread.stderr.cross_entropy == pytest.approx(
        _statsmodels_se(result.per_sample.cross_entropy, weights), rel=1e-9
    )
    assert spread.stderr.accuracy == pytest.approx(_statsmodels_se(result.correct, weights), rel=1e-9)


def test_result_keeps_row_weights_and_correctness_the_means_were_taken_over() -> None:
    result = score_multiclass(
        [1, 0, -100, 2],
        [[0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]],
        class_weights=[1.0, 2.0, 3.0],
        sample_weights=[1.0, 0.5, 4.0, 2.0],
        options=MulticlassOptions(ignore_index=-100),
    )
    assert result.row_weights.tolist() == [2.0, 0.5, 0.0, 6.0]
    assert result.correct[[0, 1, 3]].tolist() == [1.0, 0.0, 1.0]
    assert result.mean.accuracy == pytest.approx(np.dot(result.row_weights, result.correct) / 8.5)


# Paired differences


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=2, max_value=50).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0.0, 10.0), min_size=n, max_size=n),
            st.lists(st.floats(0.0, 10.0), min_size=n, max_size=n),
        )
    )
)
def test_paired_standard_error_is_root_of_variances_minus_twice_covariance_over_n(
    pair: tuple[list[float], list[float]],
) -> None:
    a, b = np.array(pair[0]), np.array(pair[1])
    n = len(a)
    d = weighted_standard_error(a - b, np.ones(n))
    # np.cov's centred products cancel where a − b barely varies: compare where they keep 1e-9 of the result.
    assume(d.stderr is not None and d.stderr > 1e-6 * max(1.0, float(np.abs(a).max()), float(np.abs(b).max())))
    covariance = np.cov(a, b, ddof=1)
    expected = math.sqrt(max(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1], 0.0) / n)
    assert d.stderr == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_paired_difference_of_two_scored_models() -> None:
    labels = [0, 1, 2, 1, 0, 2]
    rng = np.random.default_rng(14)
    model_logits = rng.normal(size=(6, 3))
    baseline = rng.dirichlet(np.ones(3), size=6)
    model_result = score_multiclass(labels, model_logits, options=MulticlassOptions(prediction_type="logits"))
    baseline_result = score_multiclass(labels, baseline)
    difference = paired_difference(model_result, baseline_result, 0.99)
    d = model_result.per_sample.cross_entropy - baseline_result.per_sample.cross_entropy
    ce = difference.cross_entropy
    assert ce.mean == pytest.approx(d.mean(), rel=1e-12)
    assert ce.stderr == pytest.approx(np.std(d, ddof=1) / np.sqrt(6), rel=1e-12)
    assert ce.z == pytest.approx(ce.mean / ce.stderr)
    assert ce.p_value == pytest.approx(2 * stats.norm.sf(abs(ce.z)), rel=1e-10)
    assert ce.ci == pytest.approx(stats.norm.interval(0.99, loc=ce.mean, scale=ce.stderr), rel=1e-12)
    assert ce.correlation == pytest.approx(
        np.corrcoef(model_result.per_sample.cross_entropy, baseline_result.per_sample.cross_entropy)[0, 1], rel=1e-12
    )
    np.testing.assert_array_equal(difference.per_sample, d)
    assert difference.n_clusters is None
    assert difference.warnings == ()


def test_weighted_correlation_equals_the_weighted_pearson_formula() -> None:
    rng = np.random.default_rng(3)
    a, b, w = rng.normal(size=20), rng.normal(size=20), rng.uniform(0, 3, 20)
    w[[2, 5]] = 0.0
    b[2] = math.inf  # a row of weight 0 takes no part
    keep = w > 0
    covariance = np.cov(a[keep], b[keep], aweights=w[keep])
    expected = covariance[0, 1] / math.sqrt(covariance[0, 0] * covariance[1, 1])
    assert weighted_correlation(a, b, w) == pytest.approx(expected, rel=1e-12)


def test_paired_difference_refuses_results_of_other_rows() -> None:
    model = score_multiclass([0, 1], [[0.6, 0.4], [0.3, 0.7]])
    with pytest.raises(BadShape, match="baseline_predictions"):
        paired_difference(model, score_multiclass([0, 1, 1], [[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]]))
    with pytest.raises(InvalidInput, match="row weights"):
        paired_difference(model, score_multiclass([0, 1], [[0.6, 0.4], [0.3, 0.7]], sample_weights=[1, 2]))


# The fast path (one row selection for every metric, dict-labelled clusters) against the formula


def _formula_se(values: np.ndarray, weights: np.ndarray, groups: list[object] | None) -> float:
    """§1's SE written out: HC1, or CR1 over the clusters of the rows with w > 0, in exact sums."""
    keep = [i for i in range(len(values)) if weights[i] > 0]
    total = math.fsum(weights[i] for i in keep)
    mean = math.fsum(weights[i] * values[i] for i in keep) / total
    scores = {i: weights[i] * (values[i] - mean) for i in keep}
    if groups is None:
        return math.sqrt(len(keep) / (len(keep) - 1) * math.fsum(s * s for s in scores.values())) / total
    by_cluster: dict[object, list[float]] = {}
    for i, score in scores.items():
        by_cluster.setdefault(groups[i], []).append(score)
    g = len(by_cluster)
    return math.sqrt(g / (g - 1) * math.fsum(math.fsum(s) ** 2 for s in by_cluster.values())) / total


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=3, max_value=300),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    n_groups=st.integers(min_value=2, max_value=40),
    kind=st.sampled_from(["none", "strings", "integers", "int64 array", "huge integers"]),
)
def test_fast_standard_errors_equal_the_formula_to_1e_12(n: int, seed: int, n_groups: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    labels[rng.random(n) < 0.2] = -100
    weights = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.01, 5.0, n))
    options = MulticlassOptions(prediction_type="logits", ignore_index=-100)
    model = score_multiclass(labels, rng.normal(size=(n, 4)), sample_weights=weights, options=options)
    baseline = score_multiclass(labels, rng.normal(size=(n, 4)), sample_weights=weights, options=options)
    codes = rng.integers(0, n_groups, n)
    ids: list[object] | None = {
        "none": None,
        "strings": [f"doc\0{c}\0" if c % 2 else f"doc\0{c}" for c in codes.tolist()],  # trailing NULs count
        "integers": (codes * 7 - 20).tolist(),
        "int64 array": codes * 10**15,
        "huge integers": [2**70 + 3 * c for c in codes.tolist()],
    }[kind]
    keep = model.row_weights > 0
    groups = None if ids is None else list(ids)
    assume(keep.sum() >= 2 and (groups is None or len({groups[i] for i in np.flatnonzero(keep)}) >= 2))
    spread = uncertainty(model, cluster_ids=ids)
    difference = paired_difference(model, baseline, cluster_ids=ids)
    d = model.per_sample.cross_entropy - baseline.per_sample.cross_entropy
    for ours, values in [
        (spread.stderr.cross_entropy, model.per_sample.cross_entropy),
        (spread.stderr.accuracy, model.correct),
        (difference.cross_entropy.stderr, d),
        (difference.accuracy.stderr, model.correct - baseline.correct),
    ]:
        if np.ptp(values[keep]) == 0:
            assert ours == 0.0
        else:
            assert ours == pytest.approx(_formula_se(values, model.row_weights, groups), rel=1e-12)
    assert difference.kl_divergence == difference.cross_entropy
    expected_groups = None if groups is None else len({groups[i] for i in np.flatnonzero(keep)})
    assert spread.n_clusters == difference.n_clusters == expected_groups


def test_clustered_errors_do_not_depend_on_how_the_clusters_are_labelled() -> None:
    rng = np.random.default_rng(11)
    n = 2_000
    result = score_multiclass(
        rng.integers(0, 5, n), rng.normal(size=(n, 5)), options=MulticlassOptions(prediction_type="logits")
    )
    codes = rng.integers(0, 300, n)
    relabelled = rng.permutation(300)[codes]
    reference = uncertainty(result, cluster_ids=codes)
    for ids in (
        [f"doc-{c}" for c in codes.tolist()],
        codes.tolist(),
        relabelled * 10**12,
        cluster_codes(codes, n),
        np.array([f"doc-{c}" for c in relabelled.tolist()]),
    ):
        assert uncertainty(result, cluster_ids=ids) == reference  # bit for bit
    assert reference.stderr.cross_entropy == pytest.approx(
        _statsmodels_se(result.per_sample.cross_entropy, np.ones(n), codes), rel=1e-12
    )


# Edge cases


def test_one_row_has_no_standard_error_and_says_why() -> None:
    spread = uncertainty(score_multiclass([1], REFERENCE))
    assert spread.stderr.cross_entropy is None
    assert spread.ci.cross_entropy is None
    assert spread.ci.perplexity is None
    (warning,) = spread.warnings
    assert warning.code == STDERR_UNDEFINED
    assert warning.message == (
        "standard errors and intervals are null: only 1 scored row has a positive weight; "
        "a standard error needs at least 2"
    )


@pytest.mark.parametrize(
    ("cluster_ids", "sample_weights"),
    [(["doc"] * 3, None), ([7, 7, 7], None), (np.array([7, 7, 7]), None), ([1, 2, 2], [0.0, 1.0, 2.0])],
)
def test_all_scored_rows_in_one_cluster_have_no_clustered_error(
    cluster_ids: object, sample_weights: list[float] | None
) -> None:
    result = score_multiclass([1, 0, 2], REFERENCE * 3, sample_weights=sample_weights)
    spread = uncertainty(result, cluster_ids=cluster_ids)
    assert spread.n_clusters == 1
    assert spread.stderr == type(spread.stderr)(None, None, None, None)
    (warning,) = spread.warnings
    assert "lie in 1 cluster; a clustered standard error needs at least 2" in warning.message


def test_zero_total_weight_has_no_mean_and_no_standard_error() -> None:
    result = score_multiclass([1, 0], REFERENCE * 2, sample_weights=[0.0, 0.0])
    spread = uncertainty(result, cluster_ids=["a", "b"])
    assert spread.stderr.cross_entropy is None
    assert spread.n_clusters == 0
    assert spread.warnings[0].message == "standard errors and intervals are null: no scored row has a positive weight"


def test_constant_losses_have_zero_error_and_no_correlation_z_or_p() -> None:
    model = score_multiclass([1, 1, 1], REFERENCE * 3)
    baseline = score_multiclass([1, 1, 1], [[0.3, 0.4, 0.3]] * 3)
    spread = uncertainty(model)
    assert spread.stderr.cross_entropy == 0.0
    assert spread.ci.cross_entropy == (model.mean.cross_entropy, model.mean.cross_entropy)
    ce = paired_difference(model, baseline).cross_entropy
    assert ce.stderr == 0.0
    assert ce.z is None
    assert ce.p_value is None
    assert ce.correlation is None


def test_infinite_values_null_only_their_metric() -> None:
    result = score_multiclass([0, 1, 2], [[0.0, 0.5, 0.5], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]], options=_exact())
    spread = uncertainty(result)
    assert spread.stderr.cross_entropy is None
    assert spread.ci.perplexity is None
    assert spread.stderr.entropy == 0.0
    assert spread.stderr.accuracy is not None
    assert spread.warnings == ()  # the result's NON_FINITE warning says why
    assert weighted_standard_error(np.array([1.0, math.inf]), np.ones(2)).non_finite
    other = score_multiclass([0, 1, 2], [[0.0, 0.5, 0.5], [0.3, 0.4, 0.3], [0.3, 0.3, 0.4]], options=_exact())
    ce = paired_difference(result, other).cross_entropy
    assert ce.mean is None
    assert ce.stderr is None
    assert ce.correlation is None


def _exact() -> MulticlassOptions:
    return MulticlassOptions(epsilon=0.0)


@pytest.mark.parametrize("scale", [1e308, 1e-300])
def test_extreme_weights_give_the_standard_error_of_moderate_ones(scale: float) -> None:
    values = np.array([0.3, 1.2, 0.7, 2.5])
    weights = np.array([1.0, 0.5, 1.7, 0.25])
    groups = np.array([0, 0, 1, 2])
    for clusters in (None, groups):
        reference = weighted_standard_error(values, weights, clusters)
        extreme = weighted_standard_error(values, weights * scale, clusters)
        assert extreme.stderr == pytest.approx(reference.stderr, rel=1e-14)
        assert extreme.mean == pytest.approx(reference.mean, rel=1e-14)


def test_huge_values_do_not_overflow() -> None:
    values = np.array([1e307, 3e307, 5e307])
    se = weighted_standard_error(values, np.full(3, 1e308))
    assert se.stderr == pytest.approx(1e307 * np.std([1, 3, 5], ddof=1) / np.sqrt(3), rel=1e-14)


def test_binary_result_in_bits_maps_its_interval_to_perplexity_in_nats() -> None:
    result = score_binary([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.3], options=BinaryOptions(unit="bits"))
    spread = uncertainty(result)
    assert spread.ci.cross_entropy is not None
    low, high = spread.ci.cross_entropy
    assert spread.ci.perplexity == pytest.approx((2.0**low, 2.0**high), rel=1e-12)


# Inputs


def test_cluster_ids_are_compared_as_given() -> None:
    assert cluster_codes(["b", "a", "b", "a\0"], 4).tolist() == [2, 0, 2, 1]
    assert cluster_codes([10, -3, 10, 2**70], 4).tolist() == [1, 0, 1, 2]
    assert cluster_codes(np.array(["x", "y", "x"]), 3).tolist() == [0, 1, 0]
    assert cluster_codes(np.array([5, 5, 6], dtype=np.uint8), 3).tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("cluster_ids", "row", "message"),
    [
        (["a", 1, "b"], 1, "cluster ids are all strings or all integers, got 1 after a string in row 0"),
        ([1, "1"], 1, "got the string '1' after an integer in row 0"),
        ([1, True], 1, "got true"),
        ([1.5, 2.0], 0, "got 1.5"),
        ([None, 1], 0, "got null"),
    ],
)
def test_a_mix_of_cluster_ids_is_refused_naming_the_row(cluster_ids: list[object], row: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        cluster_codes(cluster_ids, len(cluster_ids))
    assert caught.value.field == "cluster_ids"
    assert caught.value.row == row


def test_cluster_ids_of_the_wrong_length_or_dtype_are_refused() -> None:
    with pytest.raises(BadShape, match="has 2 entries but there are 3 rows"):
        cluster_codes([1, 2], 3)
    with pytest.raises(InvalidInput, match="dtype float64"):
        cluster_codes(np.array([1.0, 2.0]), 2)
    with pytest.raises(BadShape, match="2 dimensions"):
        cluster_codes(np.zeros((2, 2), dtype=int), 2)
    with pytest.raises(InvalidInput, match="expected an array"):
        cluster_codes("abc", 3)


@pytest.mark.parametrize("confidence", [0, 1, 0.0, 1.0, -0.5, 1.5, math.nan, math.inf, True, "0.9", None])
def test_confidence_outside_the_open_unit_interval_is_refused(confidence: object) -> None:
    with pytest.raises(InvalidOption) as caught:
        check_confidence(confidence)
    assert caught.value.field == "confidence"


def test_confidence_option_is_defined_once_in_the_contract() -> None:
    option = UNCERTAINTY_OPTIONS["confidence"]
    assert (option.default, option.interval) == (0.95, "(0, 1)")
    assert UNCERTAINTY_OPTIONS["cluster_ids"].array
    assert UNCERTAINTY_OPTIONS["cluster_ids"].default is None
    assert uncertainty(score_multiclass([1, 0], REFERENCE * 2)).confidence == 0.95
