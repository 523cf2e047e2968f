"""Request examples shown in /docs; the first of each is the reference example."""

from typing import Any

CROSS_ENTROPY_EXAMPLES: dict[str, dict[str, Any]] = {
    "reference": {
        "summary": "True class B of A/B/C, predicted [0.228, 0.619, 0.153]: 0.479650 nats",
        "value": {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]},
    },
    "class_names_in_bits": {
        "summary": "Class-name labels, answer in bits",
        "value": {
            "classes": ["A", "B", "C"],
            "labels": ["B", "C", "B"],
            "predictions": [[0.228, 0.619, 0.153], [0.001, 0.001, 0.998], [0.333, 0.333, 0.334]],
            "unit": "bits",
        },
    },
    "logits": {
        "summary": "Logits through a stable log-softmax: [1000, 0, -1000], class 2 gives 2000 nats",
        "value": {"labels": [2], "predictions": [[1000, 0, -1000]], "prediction_type": "logits"},
    },
    "soft_targets": {
        "summary": "Soft targets: CE = H(target) + KL(target || prediction)",
        "value": {"labels": [[0.5, 0.5, 0.0], [0.1, 0.8, 0.1]], "predictions": [[0.4, 0.4, 0.2], [0.2, 0.7, 0.1]]},
    },
    "weights_and_ignore": {
        "summary": "Class and sample weights, label smoothing, and a row ignored with ignore_index",
        "value": {
            "labels": [0, 2, -100],
            "predictions": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4]],
            "class_weights": [1, 2, 3],
            "sample_weights": [1, 0.5, 1],
            "label_smoothing": 0.1,
            "ignore_index": -100,
        },
    },
}

BINARY_EXAMPLES: dict[str, dict[str, Any]] = {
    "binary": {
        "summary": "Binary: labels [0, 1, 1], P(positive) [0.1, 0.8, 0.6]: mean 0.279777 nats",
        "value": {"labels": [0, 1, 1], "predictions": [0.1, 0.8, 0.6]},
    },
    "multi_label_logits": {
        "summary": "Multi-label logits with a positive-class weight per label",
        "value": {
            "labels": [[1, 0, 1], [0, 0, 1]],
            "predictions": [[2.0, -1.0, 0.5], [-3.0, 0.2, 4.0]],
            "prediction_type": "logits",
            "pos_weight": [1.0, 2.0, 0.5],
        },
    },
}

CROSS_ENTROPY_COMPARE_EXAMPLES: dict[str, dict[str, Any]] = {
    "paired": {
        "summary": "A model against a baseline on four rows: the paired difference of each metric",
        "value": {
            "labels": [1, 0, 2, 1],
            "predictions": [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]],
            "baseline_predictions": [[0.3, 0.4, 0.3], [0.4, 0.3, 0.3], [0.3, 0.3, 0.4], [0.4, 0.3, 0.3]],
        },
    },
    "clustered_logits_baseline": {
        "summary": "Rows in clusters (two per document), a baseline given as logits",
        "value": {
            "labels": [1, 0, 2, 1, 0, 2],
            "predictions": [
                [0.228, 0.619, 0.153],
                [0.5, 0.3, 0.2],
                [0.1, 0.2, 0.7],
                [0.2, 0.6, 0.2],
                [0.6, 0.2, 0.2],
                [0.3, 0.3, 0.4],
            ],
            "baseline_predictions": [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 1]],
            "baseline_prediction_type": "logits",
            "cluster_ids": ["doc-a", "doc-a", "doc-b", "doc-b", "doc-c", "doc-c"],
            "per_sample": False,
        },
    },
}

BINARY_COMPARE_EXAMPLES: dict[str, dict[str, Any]] = {
    "paired": {
        "summary": "Binary: a model against a baseline on the same four labels",
        "value": {
            "labels": [0, 1, 1, 0],
            "predictions": [0.1, 0.8, 0.6, 0.3],
            "baseline_predictions": [0.4, 0.6, 0.5, 0.5],
        },
    },
}
