"""The blocked hard-label kernel against the reference path and plain dense NumPy, across block boundaries.

``scan_rows`` reads N×C predictions a block of rows at a time (transposed for few classes), so
the sizes here straddle the block size: one row short of a block, exactly one, one over, and
several blocks with a partial last one. The reference is written the obvious way, on the whole
array at once. Errors planted in a late block must name the same entry as a dense scan would.
"""

from typing import Any

import numpy as np
import pytest

from service.core import (
    InvalidInput,
    MulticlassOptions,
    Normalization,
    NotFinite,
    OutOfRange,
    PredictionType,
    UnknownClass,
    multiclass,
    score_multiclass,
)
from service.core.kernels import SMALL_ENTRIES, block_rows, hard_label_scan, scan_rows
from service.core.multiclass import hard_label_reference
from service.core.options import MACHINE_EPSILON
from service.core.result import ScoreResult, ScoringWarning

RTOL = 1e-13
CLASSES = [2, 3, 10, 33, 1000]
KINDS = ["logits", "log_probabilities", "probabilities"]


def sizes(classes: int) -> list[int]:
    """Row counts around the block size (and a small batch, scanned whole)."""
    block = block_rows(classes)
    return [3, block - 1, block, block + 1, 2 * block + 3]


def predictions(rng: np.random.Generator, n: int, classes: int, kind: str) -> np.ndarray:
    logits = rng.normal(scale=3.0, size=(n, classes))
    logits[::7] = np.round(logits[::7])  # integer logits: ties for the argmax
    if kind == "logits":
        return logits
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = softmax / softmax.sum(axis=1, keepdims=True)
    probabilities[::5] *= 0.99  # a few rows off by more than the tolerance
    if kind == "probabilities":
        return probabilities
    return np.minimum(np.log(probabilities), 0.0)


def reference(
    labels: np.ndarray,
    preds: np.ndarray,
    kind: str,
    *,
    renormalize: bool,
    ignore_index: int | None = None,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-sample cross-entropy, weighted mean and accuracy, densely."""
    n = preds.shape[0]
    scored = np.ones(n, dtype=bool) if ignore_index is None else labels != ignore_index
    y = np.where(scored, labels, 0)
    if kind == "logits" or (kind == "log_probabilities" and renormalize):
        peak = preds.max(axis=1, keepdims=True)
        log_q = (preds - peak) - np.log(np.exp(preds - peak).sum(axis=1, keepdims=True))
    elif kind == "log_probabilities":
        log_q = preds
    else:
        q = preds / preds.sum(axis=1, keepdims=True) if renormalize else preds
        log_q = np.log(np.clip(q, MACHINE_EPSILON, 1 - MACHINE_EPSILON))
    ce = -log_q[np.arange(n), y]
    weights = np.ones(n) if sample_weights is None else sample_weights.copy()
    if class_weights is not None:
        weights = weights * class_weights[y]
    weights[~scored] = 0.0
    correct = preds.argmax(axis=1) == y
    return {
        "per_sample": np.where(scored, ce, np.nan),
        "mean": float(np.sum(weights * ce) / weights.sum()),
        "accuracy": float(np.sum(weights * correct) / weights.sum()),
    }


def check(result: Any, expected: dict[str, Any]) -> None:
    per_sample = result.per_sample
    np.testing.assert_allclose(per_sample.cross_entropy, expected["per_sample"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(per_sample.kl_divergence, expected["per_sample"], rtol=RTOL, atol=0)
    scored = ~np.isnan(expected["per_sample"])
    assert (per_sample.entropy[scored] == 0).all()
    assert result.mean.cross_entropy == pytest.approx(expected["mean"], rel=1e-12)
    assert result.mean.accuracy == pytest.approx(expected["accuracy"], rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("classes", CLASSES)
def test_blocked_path_matches_dense_reference_across_block_boundaries(classes: int, kind: str) -> None:
    rng = np.random.default_rng(classes)
    for n in sizes(classes):
        preds = predictions(rng, n, classes, kind)
        labels = rng.integers(0, classes, size=n)
        for renormalize in (False, True):
            policy = Normalization.RENORMALIZE if renormalize else Normalization.WARN
            options = MulticlassOptions(prediction_type=PredictionType(kind), normalization=policy)
            result = score_multiclass(labels, preds, options=options)
            check(result, reference(labels, preds, kind, renormalize=renormalize or kind == "logits"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("classes", CLASSES)
def test_blocked_path_with_ignore_index_and_weights_matches_dense_reference(classes: int, kind: str) -> None:
    rng = np.random.default_rng(1000 + classes)
    n = 2 * block_rows(classes) + 3
    preds = predictions(rng, n, classes, kind)
    labels = rng.integers(0, classes, size=n)
    labels[::4] = -100
    class_weights = rng.uniform(0.1, 2.0, size=classes)
    sample_weights = rng.uniform(0.0, 3.0, size=n)
    options = MulticlassOptions(
        prediction_type=PredictionType(kind), normalization=Normalization.RENORMALIZE, ignore_index=-100
    )
    result = score_multiclass(
        labels, preds, class_weights=class_weights, sample_weights=sample_weights, options=options
    )
    expected = reference(
        labels,
        preds,
        kind,
        renormalize=True,
        ignore_index=-100,
        class_weights=class_weights,
        sample_weights=sample_weights,
    )
    check(result, expected)
    assert np.array_equal(result.scored, labels != -100)


@pytest.mark.parametrize("classes", [*range(2, 34), 100, 129, 1000])
@pytest.mark.parametrize("exponentiate", [True, False])
def test_scan_rows_equals_the_dense_numpy_expressions_bit_for_bit(classes: int, exponentiate: bool) -> None:
    rng = np.random.default_rng(classes)
    n = max(2 * block_rows(classes) + 3, SMALL_ENTRIES // classes + 1)
    values = rng.uniform(0.0, 1.0, size=(n, classes))
    values[::3] = rng.integers(0, 3, size=(values[::3].shape))  # ties everywhere
    labels = rng.integers(0, classes, size=n)
    scan = scan_rows(values, labels, exponentiate=exponentiate)
    assert scan is not None
    peak = values.max(axis=1)
    total = np.exp(values - peak[:, None]).sum(axis=1) if exponentiate else values.sum(axis=1)
    assert np.array_equal(scan.peak, peak)
    assert np.array_equal(scan.total, total)
    assert np.array_equal(scan.picked, values[np.arange(n), labels])
    assert np.array_equal(scan.hit, values.argmax(axis=1) == labels)
    assert (scan.lowest, scan.highest) == (values.min(), values.max())


def test_fortran_ordered_predictions_score_like_c_ordered() -> None:
    rng = np.random.default_rng(7)
    preds = rng.normal(size=(5000, 10))
    labels = rng.integers(0, 10, size=5000)
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS)
    c_result = score_multiclass(labels, preds, options=options)
    f_result = score_multiclass(labels, np.asfortranarray(preds), options=options)
    np.testing.assert_allclose(f_result.per_sample.cross_entropy, c_result.per_sample.cross_entropy, rtol=RTOL)
    assert f_result.mean.accuracy == c_result.mean.accuracy


# --- the kernel against the reference path, bit for bit ---------------------------------------------------------


def kernel_cases() -> list[tuple[str, int, str, float | None]]:
    """(prediction type, classes, normalization, epsilon): every combination the kernel serves."""
    policies = [policy.value for policy in Normalization]
    return [
        (kind, classes, policy, epsilon)
        for kind in KINDS
        for classes in CLASSES
        for policy in policies
        for epsilon in ([None, 0.0, 1e-3] if kind == "probabilities" else [None])
    ]


def random_batch(seed: int, classes: int, kind: str, *, ignored: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions over several blocks, labels (every fourth ignored when ``ignored``) and the scored mask."""
    rng = np.random.default_rng(seed)
    n = 2 * block_rows(classes) + 3
    preds = predictions(rng, n, classes, kind)
    if kind == "probabilities":
        preds[1::9, 0] = 0.0  # zero probabilities: −inf without a clip, clipped with one
    labels = rng.integers(0, classes, size=n)
    if ignored:
        labels[::4] = -100
    scored = labels != -100
    return preds, np.where(scored, labels, 0), scored


def run_path(path: Any, preds: np.ndarray, labels: np.ndarray, scored: np.ndarray, options: MulticlassOptions) -> Any:
    """What one hard-label path returns and warns, or the error it raises (type and message)."""
    warnings: list[ScoringWarning] = []
    try:
        scores = path(preds, labels, scored, options, warnings)
    except InvalidInput as error:
        return type(error), str(error)
    return scores, warnings


@pytest.mark.parametrize(("kind", "classes", "policy", "epsilon"), kernel_cases())
def test_hard_label_kernel_equals_the_reference_path_bit_for_bit(
    kind: str, classes: int, policy: str, epsilon: float | None
) -> None:
    for ignored in (False, True):
        preds, labels, scored = random_batch(classes + len(policy), classes, kind, ignored=ignored)
        options = MulticlassOptions(
            prediction_type=PredictionType(kind), normalization=Normalization(policy), epsilon=epsilon
        )
        fast = run_path(hard_label_scan, preds, labels, scored, options)
        reference = run_path(hard_label_reference, preds, labels, scored, options)
        if isinstance(reference[0], type):  # the policy rejects the batch: both raise the same error
            assert fast == reference
            continue
        assert fast[0] is not None, "the kernel declined a finite, in-range, C-contiguous batch"
        (log_q, clipped, correct, normaliser), warnings = fast
        if kind == "logits":  # (x − peak) − log_sum at the label's column is the log q it returned
            peak, log_sum = normaliser
            rows = np.arange(labels.shape[0])
            assert np.array_equal(np.subtract(preds[rows, labels], peak) - log_sum, log_q)
        else:
            assert normaliser is None
        (expected_log_q, expected_clipped, expected_correct), expected_warnings = reference
        assert log_q.tobytes() == expected_log_q.tobytes()
        assert (clipped is None) == (expected_clipped is None)
        if clipped is not None:
            assert np.array_equal(clipped, expected_clipped)
        assert correct.tobytes() == expected_correct.tobytes()
        assert warnings == expected_warnings


def answer(result: ScoreResult) -> tuple[Any, ...]:
    """Every number, mask and warning of a result, as bytes and reprs that compare bit for bit."""
    per_sample = result.per_sample
    arrays = (per_sample.cross_entropy, per_sample.kl_divergence, per_sample.entropy, result.scored)
    return (*(array.tobytes() for array in arrays), repr(result.mean), repr(result.sum), result.warnings)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("classes", CLASSES)
def test_score_multiclass_gives_the_same_answer_without_the_kernel(
    classes: int, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(2000 + classes)
    preds, labels, _ = random_batch(3000 + classes, classes, kind, ignored=True)
    class_weights = rng.uniform(0.1, 2.0, size=classes)
    options = MulticlassOptions(
        prediction_type=PredictionType(kind), normalization=Normalization.RENORMALIZE, ignore_index=-100
    )
    labels[::4] = -100
    dispatched = score_multiclass(labels, preds, class_weights=class_weights, options=options)
    monkeypatch.setattr(multiclass, "hard_label_scan", lambda *args: None)  # the kernel declines every batch
    reference = score_multiclass(labels, preds, class_weights=class_weights, options=options)
    assert answer(dispatched) == answer(reference)


# --- errors in a late block -------------------------------------------------------------------------------------

LATE_BAD = [
    ("logits", np.nan, NotFinite, "NaN is not allowed; every number must be finite"),
    ("logits", np.inf, NotFinite, "Infinity is not allowed; every number must be finite"),
    ("logits", -np.inf, NotFinite, "-Infinity is not allowed; every number must be finite"),
    ("log_probabilities", -np.inf, NotFinite, "-Infinity is not allowed; every number must be finite"),
    ("log_probabilities", 0.5, OutOfRange, "log-probability 0.5 is positive; log-probabilities are <= 0"),
    ("probabilities", np.nan, NotFinite, "NaN is not allowed; every number must be finite"),
    (
        "probabilities",
        -0.25,
        OutOfRange,
        'probability -0.25 is outside [0, 1] (for scores, set prediction_type to "logits")',
    ),
    (
        "probabilities",
        1.5,
        OutOfRange,
        'probability 1.5 is outside [0, 1] (for scores, set prediction_type to "logits")',
    ),
]


@pytest.mark.parametrize(("kind", "value", "error", "message"), LATE_BAD)
@pytest.mark.parametrize("classes", [3, 10, 1000])
def test_bad_value_in_a_late_block_names_its_row_and_column(
    classes: int, kind: str, value: float, error: type[InvalidInput], message: str
) -> None:
    rng = np.random.default_rng(3)
    n = 3 * block_rows(classes) + 5
    preds = predictions(rng, n, classes, kind)
    labels = rng.integers(0, classes, size=n)
    row, column = 2 * block_rows(classes) + 1, classes - 1
    preds[row, column] = value
    preds[row + 2, 0] = value  # a later one is not reported
    with pytest.raises(error) as raised:
        score_multiclass(labels, preds, options=MulticlassOptions(prediction_type=PredictionType(kind)))
    assert (raised.value.field, raised.value.row, raised.value.column) == ("predictions", row, column)
    assert raised.value.message == message


def test_a_non_finite_prediction_is_reported_before_a_bad_label() -> None:
    n = 3 * block_rows(10)
    preds = np.zeros((n, 10))
    preds[n - 2, 4] = np.nan
    labels = np.zeros(n, dtype=np.int64)
    labels[1] = 10
    with pytest.raises(NotFinite) as raised:
        score_multiclass(labels, preds, options=MulticlassOptions(prediction_type=PredictionType.LOGITS))
    assert (raised.value.row, raised.value.column) == (n - 2, 4)
    preds[n - 2, 4] = 0.0
    with pytest.raises(UnknownClass) as unknown:
        score_multiclass(labels, preds, options=MulticlassOptions(prediction_type=PredictionType.LOGITS))
    assert unknown.value.row == 1


def test_unnormalized_rows_in_late_blocks_are_all_reported() -> None:
    rng = np.random.default_rng(11)
    n = 3 * block_rows(10) + 1
    preds = predictions(rng, n, 10, "probabilities")
    labels = rng.integers(0, 10, size=n)
    result = score_multiclass(labels, preds)
    off = np.flatnonzero(np.abs(preds.sum(axis=1) - 1.0) > 1e-3)
    [warning] = [w for w in result.warnings if w.code == "ROWS_NOT_NORMALIZED"]
    assert warning.count == off.size
    assert list(warning.rows) == off[:20].tolist()
