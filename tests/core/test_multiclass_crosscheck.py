"""Random batches scored by xent and by SciPy / scikit-learn, which must agree to rtol 1e-9.

Every prediction type (probabilities, logits, log-probabilities) meets every label form
(indices, names, distributions). The expected numbers come only from the libraries:
``scipy.special.log_softmax``/``softmax``, ``scipy.stats.entropy``, ``scipy.special.rel_entr``
and ``sklearn.metrics.log_loss``.
"""

import numpy as np
import pytest
from scipy import special, stats
from sklearn.metrics import log_loss

from service.core import MulticlassOptions, PredictionType, Unit, score_multiclass

SHAPES = [(1, 2), (5, 3), (17, 4), (64, 10)]
LABEL_FORMS = ["class_indices", "class_names", "distributions"]
RTOL = 1e-9


def _batch(shape: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """Logits, the matching probabilities, hard labels, soft targets and sample weights."""
    rng = np.random.default_rng(seed)
    n, c = shape
    # Logits of moderate size keep every probability far above the 2.2e-16 clip.
    logits = rng.normal(scale=2.0, size=shape)
    return {
        "logits": logits,
        "probabilities": special.softmax(logits, axis=1),
        "indices": rng.integers(0, c, size=n),
        "targets": rng.dirichlet(np.ones(c), size=n),
        "sample_weights": rng.uniform(0.1, 2.0, size=n),
    }


def _predictions(batch: dict[str, np.ndarray], prediction_type: PredictionType) -> list[list[float]]:
    if prediction_type is PredictionType.PROBABILITIES:
        return batch["probabilities"].tolist()
    if prediction_type is PredictionType.LOGITS:
        return batch["logits"].tolist()
    return special.log_softmax(batch["logits"], axis=1).tolist()


def _labels(batch: dict[str, np.ndarray], label_form: str) -> tuple[list, list[str] | None]:
    c = batch["logits"].shape[1]
    classes = [f"class-{i}" for i in range(c)]
    if label_form == "class_indices":
        return batch["indices"].tolist(), None
    if label_form == "class_names":
        return [classes[i] for i in batch["indices"]], classes
    return batch["targets"].tolist(), None


def _dense_targets(batch: dict[str, np.ndarray], label_form: str) -> np.ndarray:
    if label_form == "distributions":
        return batch["targets"]
    return np.eye(batch["logits"].shape[1])[batch["indices"]]


def _score(batch, prediction_type, label_form, **kwargs):
    labels, classes = _labels(batch, label_form)
    options = MulticlassOptions(prediction_type=prediction_type, unit=kwargs.pop("unit", Unit.NATS))
    return score_multiclass(labels, _predictions(batch, prediction_type), classes=classes, options=options, **kwargs)


parametrize_all = pytest.mark.parametrize(
    ("shape", "prediction_type", "label_form"),
    [
        pytest.param(shape, kind, form, id=f"{shape[0]}x{shape[1]}-{kind.value}-{form}")
        for shape in SHAPES
        for kind in PredictionType
        for form in LABEL_FORMS
    ],
)


@parametrize_all
def test_per_sample_values_match_scipy_entropy(shape, prediction_type, label_form):
    batch = _batch(shape, seed=sum(shape))
    target = _dense_targets(batch, label_form)
    q = batch["probabilities"]

    result = _score(batch, prediction_type, label_form)

    entropy = stats.entropy(target, axis=1)
    kl = stats.entropy(target, q, axis=1)
    np.testing.assert_allclose(result.per_sample.entropy, entropy, rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(result.per_sample.kl_divergence, kl, rtol=RTOL)
    np.testing.assert_allclose(result.per_sample.cross_entropy, entropy + kl, rtol=RTOL)


@parametrize_all
def test_per_sample_values_match_scipy_log_softmax_and_rel_entr(shape, prediction_type, label_form):
    batch = _batch(shape, seed=sum(shape) + 1)
    target = _dense_targets(batch, label_form)
    log_q = special.log_softmax(batch["logits"], axis=1)

    result = _score(batch, prediction_type, label_form)

    np.testing.assert_allclose(
        result.per_sample.cross_entropy, -special.xlogy(target, np.exp(log_q)).sum(axis=1), rtol=RTOL
    )
    np.testing.assert_allclose(
        result.per_sample.kl_divergence, special.rel_entr(target, batch["probabilities"]).sum(axis=1), rtol=RTOL
    )


@parametrize_all
def test_per_sample_values_in_bits_match_scipy_entropy_base_2(shape, prediction_type, label_form):
    batch = _batch(shape, seed=sum(shape) + 2)
    target = _dense_targets(batch, label_form)

    result = _score(batch, prediction_type, label_form, unit=Unit.BITS)

    np.testing.assert_allclose(result.per_sample.entropy, stats.entropy(target, base=2, axis=1), rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(
        result.per_sample.kl_divergence, stats.entropy(target, batch["probabilities"], base=2, axis=1), rtol=RTOL
    )


@pytest.mark.parametrize(
    ("shape", "prediction_type", "label_form"),
    [
        pytest.param(shape, kind, form, id=f"{shape[0]}x{shape[1]}-{kind.value}-{form}")
        for shape in SHAPES
        for kind in PredictionType
        for form in ("class_indices", "class_names")
    ],
)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weights"])
def test_mean_and_sum_match_sklearn_log_loss(shape, prediction_type, label_form, weighted):
    batch = _batch(shape, seed=sum(shape) + 3)
    c = shape[1]
    weights = batch["sample_weights"] if weighted else None

    result = _score(batch, prediction_type, label_form, sample_weights=None if weights is None else weights.tolist())

    expected_args = (batch["indices"], batch["probabilities"])
    mean = log_loss(*expected_args, labels=list(range(c)), sample_weight=weights)
    total = log_loss(*expected_args, labels=list(range(c)), sample_weight=weights, normalize=False)
    assert result.mean.cross_entropy == pytest.approx(mean, rel=RTOL)
    assert result.mean.kl_divergence == pytest.approx(mean, rel=RTOL)
    assert result.sum.cross_entropy == pytest.approx(total, rel=RTOL)
    assert result.mean.perplexity == pytest.approx(np.exp(mean), rel=RTOL)


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{c}" for n, c in SHAPES])
@pytest.mark.parametrize("prediction_type", list(PredictionType))
def test_weighted_soft_target_means_match_scipy_weighted_average(shape, prediction_type):
    batch = _batch(shape, seed=sum(shape) + 4)
    weights = batch["sample_weights"]
    target, q = batch["targets"], batch["probabilities"]

    result = _score(batch, prediction_type, "distributions", sample_weights=weights.tolist())

    entropy, kl = stats.entropy(target, axis=1), stats.entropy(target, q, axis=1)
    assert result.mean.entropy == pytest.approx(np.average(entropy, weights=weights), rel=RTOL)
    assert result.mean.kl_divergence == pytest.approx(np.average(kl, weights=weights), rel=RTOL)
    assert result.mean.cross_entropy == pytest.approx(np.average(entropy + kl, weights=weights), rel=RTOL)
    assert result.sum.cross_entropy == pytest.approx(np.dot(weights, entropy + kl), rel=RTOL)


def test_sklearn_log_loss_agrees_on_a_clipped_zero_probability():
    # sklearn clips at float64 eps too: −ln(2.220446e-16) = 36.043653 for the zero row.
    labels = [0, 1, 2]
    probabilities = [[0.0, 0.5, 0.5], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]

    result = score_multiclass(labels, probabilities)

    assert result.mean.cross_entropy == pytest.approx(log_loss(labels, probabilities, labels=[0, 1, 2]), rel=RTOL)
    assert result.per_sample.cross_entropy[0] == pytest.approx(36.043653, abs=1e-6)
