"""The baseline: the plain FastAPI + Pydantic endpoint a user would otherwise write.

It is deliberately ordinary: the body is parsed into ``list[list[float]]`` by FastAPI and
Pydantic, the math is a few NumPy lines, and the answer goes back as lists through a
Pydantic response model. It serves the same route and accepts the same JSON body as xent
(hard class-index labels, probabilities or logits), so the two can be sent identical bytes.

``POST /v1/sequence-cross-entropy`` is the plain counterpart of xent's sequence endpoint (issue 16): the
``token_logprobs`` and ``completions`` forms parsed into ``list[list[float | None]]`` and Pydantic models,
the sums taken in Python loops.

``POST /constant`` is the bare endpoint of the small-request benchmark: it returns a constant
JSON body without reading the request, the ceiling of FastAPI + uvicorn on this machine.

Run it under the same uvicorn configuration as ``xent serve`` (one worker, uvloop + httptools,
log level info with the access log)::

    python -m uvicorn benchmarks.baseline_app:app --host 127.0.0.1 --port 8001
"""

import math
from typing import Literal

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

EPSILON = float(np.finfo(np.float64).eps)

app = FastAPI(title="plain cross-entropy (benchmark baseline)")


class CrossEntropyRequest(BaseModel):
    labels: list[int]
    predictions: list[list[float]]
    prediction_type: Literal["probabilities", "logits"] = "probabilities"
    per_sample: bool = True


class Quantities(BaseModel):
    cross_entropy: float
    kl_divergence: float
    entropy: float


class PerSample(BaseModel):
    cross_entropy: list[float]
    kl_divergence: list[float]
    entropy: list[float]


class CrossEntropyResponse(BaseModel):
    n: int
    mean: Quantities
    sum: Quantities
    per_sample: PerSample | None


@app.post("/v1/cross-entropy", response_model=CrossEntropyResponse)
def cross_entropy(request: CrossEntropyRequest) -> CrossEntropyResponse:
    predictions = np.asarray(request.predictions, dtype=np.float64)
    labels = np.asarray(request.labels, dtype=np.int64)
    if request.prediction_type == "logits":
        # log-softmax with the row maximum subtracted, so exp cannot overflow.
        shifted = predictions - predictions.max(axis=1, keepdims=True)
        log_q = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    else:
        log_q = np.log(np.clip(predictions, EPSILON, 1 - EPSILON))
    # Hard labels: the target is one-hot, so H = 0 and CE = KL = −log q[true class].
    ce = -log_q[np.arange(len(labels)), labels]
    kl = ce
    entropy = np.zeros_like(ce)
    n = len(labels)
    return CrossEntropyResponse(
        n=n,
        mean=Quantities(cross_entropy=ce.mean(), kl_divergence=kl.mean(), entropy=entropy.mean()),
        sum=Quantities(cross_entropy=ce.sum(), kl_divergence=kl.sum(), entropy=entropy.sum()),
        per_sample=PerSample(cross_entropy=ce.tolist(), kl_divergence=kl.tolist(), entropy=entropy.tolist())
        if request.per_sample
        else None,
    )


class CompletionsLogprobs(BaseModel):
    """An OpenAI / vLLM completions ``logprobs`` object, as a user would model it."""

    tokens: list[str]
    token_logprobs: list[float | None]
    text_offset: list[int] = []
    top_logprobs: list[dict[str, float] | None] | None = None


class SequenceRequest(BaseModel):
    token_logprobs: list[list[float | None]] | None = None
    completions: list[CompletionsLogprobs] | None = None


class TokenSummary(BaseModel):
    cross_entropy: float | None
    perplexity: float | None
    stderr: float | None


class SequenceResponse(BaseModel):
    n_sequences: int
    n_tokens: int
    n_bytes: int | None
    token: TokenSummary
    bits_per_byte: float | None
    nll: list[float]


@app.post("/v1/sequence-cross-entropy", response_model=SequenceResponse)
def sequence_cross_entropy(request: SequenceRequest) -> SequenceResponse:
    """The sums of ``POST /v1/sequence-cross-entropy`` written plainly: a loop over the sequences' positions.

    Per sequence its NLL S = −Σ log p and its token count T (positions with a log-probability); then
    L = ΣS/ΣT, perplexity e^L, and the ratio standard error √(n/(n−1)·Σ(S − L·T)²)/ΣT. The completions
    form also counts the UTF-8 bytes of the scored tokens' texts, for bits per byte.
    """
    rows: list[tuple[list[float | None], list[str] | None]]
    if request.completions is not None:
        rows = [(item.token_logprobs, item.tokens) for item in request.completions]
    else:
        rows = [(values, None) for values in request.token_logprobs or []]
    nll, tokens, n_bytes = [], [], 0
    for values, texts in rows:
        total, count = 0.0, 0
        for position, value in enumerate(values):
            if value is None:
                continue
            total -= value
            count += 1
            if texts is not None:
                n_bytes += len(texts[position].encode("utf-8"))
        nll.append(total)
        tokens.append(count)
    n_tokens = sum(tokens)
    mean = sum(nll) / n_tokens if n_tokens else None
    stderr = None
    if mean is not None and len(nll) > 1:
        spread = sum((s - mean * t) ** 2 for s, t in zip(nll, tokens, strict=True))
        stderr = math.sqrt(len(nll) / (len(nll) - 1) * spread) / n_tokens
    return SequenceResponse(
        n_sequences=len(rows),
        n_tokens=n_tokens,
        n_bytes=n_bytes if request.completions is not None else None,
        token=TokenSummary(cross_entropy=mean, perplexity=None if mean is None else math.exp(mean), stderr=stderr),
        bits_per_byte=sum(nll) / n_bytes / math.log(2) if n_bytes else None,
        nll=nll,
    )


@app.post("/constant")
async def constant() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
