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
    "gradient": {
        "summary": "The reference example as logits, with its gradient softmax(x) − y = [0.228, −0.381, 0.153]",
        "value": {
            "labels": [1],
            "predictions": [[-1.4784096500276962, -0.47965000629754095, -1.8773173575897015]],
            "prediction_type": "logits",
            "gradient": True,
        },
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
    "compat_pytorch": {
        "summary": "PyTorch's number: F.cross_entropy with class weights, label smoothing and ignore_index -100",
        "value": {
            "labels": [0, 2, -100],
            "predictions": [[2.0, 1.0, 0.1], [0.5, -1.0, 3.0], [0.0, 0.0, 0.0]],
            "prediction_type": "logits",
            "class_weights": [1, 2, 3],
            "label_smoothing": 0.1,
            "compat": "pytorch",
        },
    },
    "compat_sklearn": {
        "summary": "scikit-learn's number: log_loss clips a zero probability at eps (36.04 nats in float64)",
        "value": {"labels": [0, 1], "predictions": [[0.0, 0.5, 0.5], [0.2, 0.7, 0.1]], "compat": "sklearn"},
    },
    "breakdowns_and_calibration": {
        "summary": "Means by group (by_group), by true class (by_class) and the calibration of the top probability",
        "value": {
            "labels": [1, 0, 2, 1],
            "predictions": [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]],
            "groups": ["fr", "en", "fr", "en"],
            "per_class": True,
            "calibration_bins": 2,
            "per_sample": False,
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
    "gradient": {
        "summary": "Binary probabilities with their gradient (q − y)/(q(1 − q))",
        "value": {"labels": [0, 1, 1], "predictions": [0.1, 0.8, 0.6], "gradient": True},
    },
    "compat_keras": {
        "summary": "Keras' number: BinaryCrossentropy clips at float32 1e-7 and 1 − 1e-7 (3.98559, Keras' own test)",
        "value": {"labels": [[1, 0], [1, 0]], "predictions": [[1, 1], [1, 0]], "compat": "keras"},
    },
    "groups_and_calibration": {
        "summary": "Means by group, and the calibration of every element's probability in 5 bins",
        "value": {
            "labels": [0, 1, 1, 0, 1],
            "predictions": [0.1, 0.8, 0.6, 0.3, 0.95],
            "groups": ["short", "long", "long", "short", "long"],
            "calibration_bins": 5,
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

#: One example per input form of /v1/sequence-cross-entropy: the same three-token text ("The cat sat", the
#: first token without context), so that each answers 1.5 nats per token and 0.375 per byte.
SEQUENCE_EXAMPLES: dict[str, dict[str, Any]] = {
    "token_logprobs": {
        "summary": "Two documents as lists of log-probabilities (null: the first token has none)",
        "value": {"token_logprobs": [[None, -1.0, -2.0], [None, -0.5, -1.5, -1.0]], "num_bytes": [11, 14]},
    },
    "completions": {
        "summary": "vLLM / OpenAI completions logprobs (echo: true), bytes from the token texts",
        "value": {
            "completions": [
                {
                    "tokens": ["The", " cat", " sat"],
                    "token_logprobs": [None, -1.0, -2.0],
                    "text_offset": [0, 3, 7],
                    "top_logprobs": [None, {" cat": -1.0}, {" sat": -2.0}],
                }
            ]
        },
    },
    "chat": {
        "summary": "OpenAI chat logprobs, bytes from their bytes",
        "value": {
            "chat": [
                {
                    "content": [
                        {"token": " cat", "logprob": -1.0, "bytes": [32, 99, 97, 116], "top_logprobs": []},
                        {"token": " sat", "logprob": -2.0, "bytes": [32, 115, 97, 116], "top_logprobs": []},
                    ]
                }
            ]
        },
    },
    "prompt_logprobs": {
        "summary": "vLLM prompt_logprobs beside the prompt's token ids",
        "value": {
            "prompt_logprobs": [
                [
                    None,
                    {"9059": {"logprob": -1.0, "rank": 1, "decoded_token": " cat"}},
                    {"7731": {"logprob": -2.0, "rank": 3, "decoded_token": " sat"}, "11": {"logprob": -0.4}},
                ]
            ],
            "prompt_token_ids": [[464, 9059, 7731]],
        },
    },
    "tgi_details": {
        "summary": "TGI details with decoder_input_details: prefill, then the generated tokens",
        "value": {
            "tgi_details": [
                {
                    "prefill": [
                        {"id": 464, "text": "The", "logprob": None},
                        {"id": 9059, "text": " cat", "logprob": -1.0},
                    ],
                    "tokens": [{"id": 7731, "text": " sat", "logprob": -2.0, "special": False}],
                }
            ]
        },
    },
}

#: /v1/sequence-cross-entropy/compare: two models of the same two texts ("The cat sat", 11 bytes, 3 words; "A dog
#: ran far", 14 bytes, 4 words), the model's tokens as completions, the baseline's, another tokenizer's, as lists.
SEQUENCE_COMPARE_EXAMPLES: dict[str, dict[str, Any]] = {
    "per_byte_and_word": {
        "summary": "Two tokenizers, one text each side: the difference per byte and per word",
        "value": {
            "model": {
                "completions": [
                    {"tokens": ["The", " cat", " sat"], "token_logprobs": [None, -1.0, -2.0]},
                    {"tokens": ["A", " dog", " ran", " far"], "token_logprobs": [None, -0.5, -1.5, -1.0]},
                ]
            },
            "baseline": {"token_logprobs": [[None, -2.0, -0.5, -1.5], [None, -1.0, -2.5, -1.0, -0.5]]},
            "num_bytes": [11, 14],
            "num_words": [3, 4],
        },
    },
    "same_tokens": {
        "summary": "One tokenizer: per token too; the model's last position (a generated token) left out",
        "value": {
            "model": {"token_logprobs": [[None, -1.0, -2.0, -0.1], [None, -0.5, -1.5, -0.2]], "score_until": -1},
            "baseline": {"token_logprobs": [[None, -1.5, -2.5], [None, -1.0, -1.0]]},
            "num_bytes": [11, 12],
        },
    },
}
