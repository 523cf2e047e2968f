"""lm-evaluation-harness parity (issue 16 §3): its own aggregation functions give xent's numbers to 1e-12.

lm-evaluation-harness reports ``word_perplexity`` = exp(−Σll/Σwords), ``byte_perplexity`` = exp(−Σll/Σbytes)
and ``bits_per_byte`` = −Σll/Σbytes/ln 2 over documents, each document an item (loglikelihood, units) with
the loglikelihoods of its rolling windows summed. Its functions are read from the installed package's own
``lm_eval/api/metrics.py`` (``weighted_mean``, ``weighted_perplexity``, ``bits_per_byte``), compiled from that
file's source without its imports: importing the module pulls in sacrebleu and its dependencies, and the
package is installed without dependencies (scripts/make_venv.py, pinned in constraints.txt).
"""

import ast
import importlib.util
import math
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.core.sequence_forms import read_form
from service.core.sequences import score_sequences, sequence_summary

_FUNCTIONS = ("weighted_mean", "weighted_perplexity", "bits_per_byte")


def lm_eval_aggregations() -> dict[str, Callable[[list[tuple[float, int]]], float]]:
    """``weighted_perplexity`` and ``bits_per_byte`` (and the ``weighted_mean`` they call) from lm_eval's source."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:  # pragma: no cover - make test installs it
        pytest.fail("lm_eval is not installed: make test installs it (scripts/make_venv.py, --no-deps)")
    path = Path(spec.origin).parent / "api" / "metrics.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in _FUNCTIONS]
    assert sorted(node.name for node in found) == sorted(_FUNCTIONS)
    for node in found:
        node.decorator_list = []  # the registry's decorators only register the function by name
    namespace: dict[str, Any] = {"math": math}
    exec(compile(ast.Module(body=found, type_ignores=[]), str(path), "exec"), namespace)
    return {name: namespace[name] for name in _FUNCTIONS}


LM_EVAL = lm_eval_aggregations()


def corpus(seed: int, documents: int) -> tuple[list[list[float]], list[str], list[int], list[int], list[list[float]]]:
    """Documents split into rolling windows: each window's log-probabilities, its document, bytes and words (on the
    first window of its document, 0 on the rest), and each document's windows."""
    rng = np.random.default_rng(seed)
    windows, ids, num_bytes, num_words, whole = [], [], [], [], []
    for d in range(documents):
        values = (-rng.gamma(0.8, 3.0, size=int(rng.integers(1, 400)))).tolist()
        whole.append(values)
        cuts = sorted({0, len(values), *rng.integers(0, len(values), size=3).tolist()})
        for i, (start, end) in enumerate(pairwise(cuts)):
            windows.append(values[start:end])
            ids.append(f"doc-{d}")
            num_bytes.append(int(len(values) * 4.3) + 1 if i == 0 else 0)
            num_words.append(int(len(values) * 0.75) + 1 if i == 0 else 0)
    return windows, ids, num_bytes, num_words, whole


@pytest.mark.parametrize(("seed", "documents"), [(0, 1), (1, 2), (2, 62), (3, 500)])
def test_lm_eval_aggregations_give_the_same_numbers(seed: int, documents: int) -> None:
    windows, ids, num_bytes, num_words, whole = corpus(seed, documents)
    got = sequence_summary(
        score_sequences(
            read_form({"token_logprobs": windows}), document_ids=ids, num_bytes=num_bytes, num_words=num_words
        )
    )
    # lm-evaluation-harness's items: one per document, its loglikelihood (the windows' sum) and its units.
    loglikelihoods = [math.fsum(values) for values in whole]
    word_items = [(ll, int(len(v) * 0.75) + 1) for ll, v in zip(loglikelihoods, whole, strict=True)]
    byte_items = [(ll, int(len(v) * 4.3) + 1) for ll, v in zip(loglikelihoods, whole, strict=True)]
    token_items = [(ll, len(v)) for ll, v in zip(loglikelihoods, whole, strict=True)]
    assert got["word"]["perplexity"] == pytest.approx(LM_EVAL["weighted_perplexity"](word_items), rel=1e-12)
    assert got["byte"]["perplexity"] == pytest.approx(LM_EVAL["weighted_perplexity"](byte_items), rel=1e-12)
    assert got["byte"]["bits_per_byte"] == pytest.approx(LM_EVAL["bits_per_byte"](byte_items), rel=1e-12)
    assert got["token"]["perplexity"] == pytest.approx(LM_EVAL["weighted_perplexity"](token_items), rel=1e-12)
    # And the errors lm-evaluation-harness reports as N/A, from two documents on.
    assert (got["byte"]["stderr"] is None) == (documents < 2)


def test_bits_per_byte_is_the_byte_cross_entropy_in_bits_whatever_the_unit() -> None:
    windows, ids, num_bytes, _, whole = corpus(7, 20)
    items = [(math.fsum(v), int(len(v) * 4.3) + 1) for v in whole]
    for unit in ("nats", "bits", "hartleys"):
        result = score_sequences(
            read_form({"token_logprobs": windows}), document_ids=ids, num_bytes=num_bytes, unit=unit
        )
        assert sequence_summary(result)["byte"]["bits_per_byte"] == pytest.approx(
            LM_EVAL["bits_per_byte"](items), rel=1e-12
        )
