"""The documented shape of a mergeable ``state`` (issue 15): what every scoring answer carries and
``POST /v1/merge`` takes. The core (``service.core.state`` and each endpoint's kind) validates a state's
contents; this model is what the OpenAPI document says of it.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_SETTINGS = (
    "The settings two states must share to merge: `endpoint` first, then (scoring endpoints) `unit`, `classes`, "
    "`n_classes` (C) or `labels_per_sample` (K), `label_smoothing`, `epsilon`, `normalization`, `class_weights` "
    "or `pos_weight`, `calibration_bins`, `groups`, `per_class`, `compat` and `cluster_ids` (the ids' type, or "
    "null). A state of no rows (`n` 0) merges with any state of its endpoint. `confidence` is not among them: "
    "the merge request's own sets the intervals."
)
_ACCUMULATORS = (
    "The sufficient statistics (scoring endpoints): `n_weighted` (rows of weight > 0), `weight` and "
    "`weight_exponent` (W = weight·2^weight_exponent), for each of `cross_entropy`, `kl_divergence`, "
    "`entropy` and `accuracy` its `mean`, `sum` (null for accuracy, or where not finite), `min`, `max`, "
    "`w2` = Σwᵢ²/W², `w2_dev` = Σwᵢ²(ℓᵢ − m)/W², `w2_dev2` = Σwᵢ²(ℓᵢ − m)²/W² (merged with the parallel, Chan "
    "update of centred moments) and `finite`; `clusters` (with `cluster_ids`: each cluster's id, share "
    "W_g/W of the weight and mean of each metric; else null); `warnings` by code with their `count` and "
    "`message` (row numbers are not kept); and `groups`, `classes`, `calibration` (null when off), each a "
    "table of rows of numbers: `groups` has `names` (sorted), `clustered`, `exponent` e and `table`, a row a "
    "group of n (rows of weight > 0), W = Σwᵢ and V = Σwᵢ² (held ÷2^e and ÷2^2e), then 4 columns (cross_entropy, "
    "kl_divergence, entropy, accuracy) of each of the weighted mean m, the w²-weighted mean U, "
    "Q = Σwᵢ²(ℓᵢ − U)², the least and the largest value and whether one is infinite (0 or 1), then the group's "
    "`n` and `n_scored`; and `clusters` (per group and cluster id its weight and means; else null); `classes` the "
    "same over each true class's rows for cross_entropy and accuracy, a row ending with the class's predicted "
    "weight; `calibration` has `n_bins`, `table` (a row a bin: its count, Σw, Σw·confidence, Σw·accuracy) and "
    "`brier` (Σw·Brier term). Tables merge entry by entry with the same parallel update."
)


class ScoringState(BaseModel):
    """A mergeable state: the sufficient statistics of an answer and the settings that make states combinable.

    Merging the states of any split of a batch (`POST /v1/merge`) gives the answer of the whole batch: means
    and sums to 1e-12 relative, standard errors and intervals to 1e-9, counts exactly. Every key is required.
    """

    model_config = ConfigDict(title="State", extra="forbid")

    version: int = Field(description="The version of the state format: 1.", examples=[1])
    settings: dict[str, Any] = Field(description=_SETTINGS)
    n: int = Field(ge=0, description="Rows received.")
    n_scored: int = Field(ge=0, description="Rows scored (not ignored); at most `n`.")
    accumulators: dict[str, Any] = Field(description=_ACCUMULATORS)
