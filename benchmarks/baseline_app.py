"""The baseline: the plain FastAPI + Pydantic endpoint a user would otherwise write.

It is deliberately ordinary: the body is parsed into ``list[list[float]]`` by FastAPI and
Pydantic, the math is a few NumPy lines, and the answer goes back as lists through a
Pydantic response model. It serves the same route and accepts the same JSON body as xent
(hard class-index labels, probabilities or logits), so the two can be sent identical bytes.

``POST /constant`` is the bare endpoint of the small-request benchmark: it returns a constant
JSON body without reading the request, the ceiling of FastAPI + uvicorn on this machine.

Run it under the same uvicorn configuration as ``xent serve`` (one worker, uvloop + httptools,
log level info with the access log)::

    python -m uvicorn benchmarks.baseline_app:app --host 127.0.0.1 --port 8001
"""

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


@app.post("/constant")
async def constant() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
