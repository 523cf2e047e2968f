"""Accuracy is measured against the true class, never the argmax of the smoothed target (issue 17, item 3).

With label smoothing 1 every class of the smoothed target ties, so its argmax is class 0 whatever the
label; the cross-entropy is then taken against the uniform target on purpose, but accuracy is not.
"""

import numpy as np
import pytest

from service.core import MulticlassOptions, score_multiclass

PREDICTIONS = [[0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]


@pytest.mark.parametrize("smoothing", [0.0, 0.3, 0.999, 1.0])
def test_accuracy_is_against_the_label_whatever_the_smoothing(smoothing: float) -> None:
    result = score_multiclass([2, 1, 1], PREDICTIONS, options=MulticlassOptions(label_smoothing=smoothing))
    assert result.mean.accuracy == pytest.approx(2 / 3, rel=1e-15)  # rows 0 and 1 right, row 2 wrong


@pytest.mark.parametrize("smoothing", [0.0, 0.5, 1.0])
def test_accuracy_of_soft_targets_is_against_their_unsmoothed_argmax(smoothing: float) -> None:
    targets = [[0.0, 0.1, 0.9], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3]]
    result = score_multiclass(targets, PREDICTIONS, options=MulticlassOptions(label_smoothing=smoothing))
    assert result.mean.accuracy == pytest.approx(2 / 3, rel=1e-15)


def test_full_smoothing_keeps_scikit_learns_accuracy_on_digits() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    linear_model = pytest.importorskip("sklearn.linear_model")
    metrics = pytest.importorskip("sklearn.metrics")
    model_selection = pytest.importorskip("sklearn.model_selection")
    features, labels = datasets.load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = model_selection.train_test_split(features, labels, test_size=540, random_state=0)
    model = linear_model.LogisticRegression(max_iter=2000).fit(train_x, train_y)
    probabilities = model.predict_proba(test_x)
    expected = metrics.accuracy_score(test_y, probabilities.argmax(axis=1))
    result = score_multiclass(test_y, probabilities, options=MulticlassOptions(label_smoothing=1.0))
    assert result.n == 540
    assert expected > 0.9
    assert result.mean.accuracy == pytest.approx(expected, rel=1e-15)
    # The cross-entropy is still taken against the uniform target, as label smoothing 1 says: −mean log q / C.
    uniform = -np.log(np.clip(probabilities, 2.220446049250313e-16, 1 - 2.220446049250313e-16)).mean(axis=1).mean()
    assert result.mean.cross_entropy == pytest.approx(uniform, rel=1e-12)
