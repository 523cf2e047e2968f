"""Pydantic models of the JSON API: the single source of the OpenAPI document.

Array fields are typed ``Any`` with a hand-written JSON schema: the core checks
them (vectorised, naming the row and column of the first bad value), so that a
batch of a million numbers is not validated element by element in Python.
Scalar options are validated here, strictly (a boolean is not a number).

Over 300 lines because it is the API manual: every request and answer model with its field
descriptions, read (and published) as one document.
"""

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from service.api.state_schema import ScoringState
from service.core import BinaryOptions, MulticlassOptions, Normalization, PredictionType, Unit
from service.core.contract import AUTO, BINARY, MULTICLASS, OPTIONS, Option, resolve_epsilon
from service.core.gradient import requested_gradient

_NUMBER = {"type": "number"}
_NUMBER_ROW = {"type": "array", "items": _NUMBER}

Matrix = Annotated[Any, WithJsonSchema({"type": "array", "items": {**_NUMBER_ROW, "minItems": 2}})]
Vector = Annotated[Any, WithJsonSchema({"type": "array", "items": _NUMBER})]
VectorOrMatrix = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "array", "items": _NUMBER}, {"type": "array", "items": _NUMBER_ROW}]})
]
Labels = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "integer"}, "title": "Class indices"},
                {"type": "array", "items": {"type": "string"}, "title": "Class names"},
                {"type": "array", "items": _NUMBER_ROW, "title": "Target distributions"},
            ]
        }
    ),
]


_MULTICLASS = OPTIONS[MULTICLASS]
_BINARY = OPTIONS[BINARY]
_EPSILON = _MULTICLASS["epsilon"]


def _check_epsilon(value: object) -> object:
    """ "auto", or a number (not a boolean) in the epsilon option's range."""
    if value == AUTO and isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and _EPSILON.contains(value):
        return float(value)
    raise PydanticCustomError("epsilon", f'must be "auto" or a number in {_EPSILON.interval}')


_JSON_SCHEMA_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}

Epsilon = Annotated[
    Any,
    PlainValidator(_check_epsilon),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": AUTO, "type": "string"},
                {"type": "number", **{_JSON_SCHEMA_BOUNDS[k]: v for k, v in _EPSILON.bounds.items()}},
            ]
        }
    ),
]
ClusterIds = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "title": "Cluster names"},
                {"type": "array", "items": {"type": "integer"}, "title": "Cluster numbers"},
            ]
        }
    ),
]
Groups = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "string"}, "title": "Group names"})]
PosWeight = Annotated[
    Any,
    WithJsonSchema(
        {"anyOf": [{"type": "number", "minimum": 0}, {"type": "array", "items": {"type": "number", "minimum": 0}}]}
    ),
]

UnitName = Literal["nats", "bits", "hartleys"]
Compat = Literal["xent", "pytorch", "sklearn", "keras", "scipy"]


def _integral_float_as_int(value: object) -> object:
    """1.0 as 1: a JSON Schema ``integer`` is any number without a fractional part, and the schema says integer.

    Anything else passes through unchanged, for the strict ``int`` check (1.5, true and "1" stay refused).
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def option_field(option: Option) -> Any:
    """The Pydantic field of a contract option: its default, range and description."""
    return Field(option.default, description=option.description, ge=option.ge, gt=option.gt, le=option.le, lt=option.lt)


class _Strict(BaseModel):
    # extra="forbid": a misspelt option must fail loudly, never silently change a result.
    # strict: true is not 1, and "1" is not 1.
    model_config = ConfigDict(extra="forbid", strict=True)


class MulticlassBatch(_Strict):
    """Multi-class predictions, their labels and the options of scoring them: what ``/v1/cross-entropy`` and
    ``/v1/cross-entropy/compare`` share."""

    #: Array fields and what they hold (see ``service.api.transport._json_fast``). They are the NPZ members of the
    #: binary transport; every other field is a query parameter there.
    array_kinds: ClassVar[dict[str, str]] = {
        "predictions": "rows",
        "labels": "labels",
        "classes": "names",
        "class_weights": "numbers",
        "sample_weights": "numbers",
        "cluster_ids": "ids",
    }
    array_fields: ClassVar[frozenset[str]] = frozenset(array_kinds)

    predictions: Matrix = Field(
        description="N×C numbers, C ≥ 2: one row per sample, one column per class, of the kind `prediction_type` says.",
    )
    labels: Labels = Field(
        description=(
            "One of: N class indices (integers in [0, C)); N class names (strings; `classes` is then required); "
            "or N×C target distributions (one-hot or soft rows, each ≥ 0 and summing to 1)."
        ),
    )
    compat: Compat = option_field(_MULTICLASS["compat"])
    prediction_type: Literal["probabilities", "logits", "log_probabilities"] = option_field(
        _MULTICLASS["prediction_type"]
    )
    classes: list[str] | None = option_field(_MULTICLASS["classes"])
    label_smoothing: float = option_field(_MULTICLASS["label_smoothing"])
    class_weights: Vector | None = option_field(_MULTICLASS["class_weights"])
    sample_weights: Vector | None = option_field(_MULTICLASS["sample_weights"])
    ignore_index: int | None = option_field(_MULTICLASS["ignore_index"])
    epsilon: Epsilon = option_field(_MULTICLASS["epsilon"])
    normalization: Literal["warn", "renormalize", "error"] = option_field(_MULTICLASS["normalization"])
    tolerance: float = option_field(_MULTICLASS["tolerance"])
    unit: UnitName = option_field(_MULTICLASS["unit"])
    per_sample: bool = option_field(_MULTICLASS["per_sample"])
    gradient: bool = option_field(_MULTICLASS["gradient"])
    confidence: float = option_field(_MULTICLASS["confidence"])
    cluster_ids: ClusterIds | None = option_field(_MULTICLASS["cluster_ids"])

    # Before the strict int check and its range: the schema says integer, and 1.0 is one.
    _ignore_index = field_validator("ignore_index", mode="before")(_integral_float_as_int)

    def options(self) -> MulticlassOptions:
        """The core's options for this request."""
        return MulticlassOptions(
            prediction_type=PredictionType(self.prediction_type),
            label_smoothing=self.label_smoothing,
            epsilon=resolve_epsilon(self.epsilon),
            normalization=Normalization(self.normalization),
            tolerance=self.tolerance,
            unit=Unit(self.unit),
            ignore_index=self.ignore_index,
            gradient=requested_gradient(self.gradient, self.per_sample),
        )


class CrossEntropyRequest(MulticlassBatch):
    """A batch of multi-class predictions and their labels."""

    array_kinds: ClassVar[dict[str, str]] = {**MulticlassBatch.array_kinds, "groups": "ids"}
    array_fields: ClassVar[frozenset[str]] = frozenset(array_kinds)

    groups: Groups | None = option_field(_MULTICLASS["groups"])
    per_class: bool = option_field(_MULTICLASS["per_class"])
    calibration_bins: int | None = option_field(_MULTICLASS["calibration_bins"])

    _calibration_bins = field_validator("calibration_bins", mode="before")(_integral_float_as_int)


class BinaryBatch(_Strict):
    """Binary (N) or multi-label (N×K) predictions, their labels and the options of scoring them: what
    ``/v1/binary-cross-entropy`` and ``/v1/binary-cross-entropy/compare`` share."""

    array_kinds: ClassVar[dict[str, str]] = {
        "predictions": "numbers_or_rows",
        "labels": "numbers_or_rows",
        "pos_weight": "numbers",
        "sample_weights": "numbers",
        "cluster_ids": "ids",
    }
    array_fields: ClassVar[frozenset[str]] = frozenset(array_kinds)

    predictions: VectorOrMatrix = Field(
        description="N numbers (binary: the probability or logit of the positive class) or N×K (K independent labels).",
    )
    labels: VectorOrMatrix = Field(
        description="Same shape as `predictions`, each in [0, 1]: hard 0/1 labels or soft ones.",
    )
    compat: Compat = option_field(_BINARY["compat"])
    prediction_type: Literal["probabilities", "logits"] = option_field(_BINARY["prediction_type"])
    pos_weight: PosWeight | None = option_field(_BINARY["pos_weight"])
    label_smoothing: float = option_field(_BINARY["label_smoothing"])
    sample_weights: Vector | None = option_field(_BINARY["sample_weights"])
    epsilon: Epsilon = option_field(_BINARY["epsilon"])
    unit: UnitName = option_field(_BINARY["unit"])
    per_sample: bool = option_field(_BINARY["per_sample"])
    gradient: bool = option_field(_BINARY["gradient"])
    confidence: float = option_field(_BINARY["confidence"])
    cluster_ids: ClusterIds | None = option_field(_BINARY["cluster_ids"])

    def options(self) -> BinaryOptions:
        """The core's options for this request."""
        return BinaryOptions(
            prediction_type=PredictionType(self.prediction_type),
            label_smoothing=self.label_smoothing,
            epsilon=resolve_epsilon(self.epsilon),
            unit=Unit(self.unit),
            gradient=requested_gradient(self.gradient, self.per_sample),
        )


class BinaryCrossEntropyRequest(BinaryBatch):
    """A batch of binary (N) or multi-label (N×K) predictions and their labels."""

    array_kinds: ClassVar[dict[str, str]] = {**BinaryBatch.array_kinds, "groups": "ids"}
    array_fields: ClassVar[frozenset[str]] = frozenset(array_kinds)

    groups: Groups | None = option_field(_BINARY["groups"])
    calibration_bins: int | None = option_field(_BINARY["calibration_bins"])

    _calibration_bins = field_validator("calibration_bins", mode="before")(_integral_float_as_int)


_BASELINE_PREDICTIONS = (
    "The baseline model's predictions for the same rows: the shape of `predictions`, of the kind "
    "`baseline_prediction_type` says."
)
_BASELINE_PREDICTION_TYPE = "How to read `baseline_predictions`; default (null): as `prediction_type` says."


class _Baseline:
    """What both comparison requests add to their base request's methods: the baseline's prediction type and options."""

    if TYPE_CHECKING:
        prediction_type: str
        baseline_prediction_type: str | None

        def options(self) -> Any: ...

    @property
    def baseline_type(self) -> str:
        """The baseline's prediction type, the default resolved."""
        return self.baseline_prediction_type or self.prediction_type

    def baseline_options(self) -> Any:
        """The core's options for the baseline: the model's, but its prediction type, and no gradient (a comparison's
        gradient is the model's: the baseline's predictions are constants of dᵢ = ℓᵢ(model) − ℓᵢ(baseline))."""
        return replace(self.options(), prediction_type=PredictionType(self.baseline_type), gradient=False)


class CrossEntropyCompareRequest(_Baseline, MulticlassBatch):
    """Two models' multi-class predictions for the same rows and labels: the model, and a baseline."""

    array_kinds: ClassVar[dict[str, str]] = {**MulticlassBatch.array_kinds, "baseline_predictions": "rows"}
    array_fields: ClassVar[frozenset[str]] = frozenset(array_kinds)

    baseline_predictions: Matrix = Field(description=_BASELINE_PREDICTIONS)
    baseline_prediction_type: Literal["probabilities", "logits", "log_probabilities"] | None = Field(
        None, description=_BASELINE_PREDICTION_TYPE
    )


class BinaryCrossEntropyCompareRequest(_Baseline, BinaryBatch):
    """Two models' binary or multi-label predictions for the same rows and labels: the model, and a baseline."""

    array_kinds: ClassVar[dict[str, str]] = {
        **BinaryBatch.array_kinds,
        "baseline_predictions": "numbers_or_rows",
    }
    array_fields: ClassVar[frozenset[str]] = frozenset(array_kinds)

    baseline_predictions: VectorOrMatrix = Field(description=_BASELINE_PREDICTIONS)
    baseline_prediction_type: Literal["probabilities", "logits"] | None = Field(
        None, description=_BASELINE_PREDICTION_TYPE
    )


# --- responses ---------------------------------------------------------------------------------

_NULLABLE = " `null` when nothing was scored (or the value is not finite)."


class Means(BaseModel):
    """Weighted means over the scored rows."""

    cross_entropy: float | None = Field(description="Mean cross-entropy." + _NULLABLE)
    kl_divergence: float | None = Field(
        description=(
            "Mean KL divergence KL(target ‖ prediction); ≥ 0, except for prediction rows that do not sum to 1 "
            "and were scored as given." + _NULLABLE
        )
    )
    entropy: float | None = Field(description="Mean entropy of the target." + _NULLABLE)
    perplexity: float | None = Field(
        description="e^(mean cross-entropy in nats), whatever the unit." + _NULLABLE,
    )
    accuracy: float | None = Field(
        description=(
            "Share of rows whose predicted class (argmax) is the true one (argmax of a soft target); binary: "
            "share of labels on the right side of 0.5 (logit 0)." + _NULLABLE
        ),
    )


class Sums(BaseModel):
    """Weighted sums over the scored rows (0 when nothing was scored)."""

    cross_entropy: float | None = Field(description="Σ wᵢ·CEᵢ; `null` only when not finite.")
    kl_divergence: float | None = Field(description="Σ wᵢ·KLᵢ; `null` only when not finite.")
    entropy: float | None = Field(description="Σ wᵢ·Hᵢ.")


_SE = (
    "SE² = n/(n−1) · Σwᵢ²(ℓᵢ − m)² / (Σwᵢ)² over the n scored rows with wᵢ > 0, m = Σwᵢℓᵢ / Σwᵢ (HC1; s²/n "
    "with all weights 1); with `cluster_ids`, the CR1 error SE² = G/(G−1) · Σ_g (Σ_{i∈g} wᵢ(ℓᵢ − m))² / (Σwᵢ)² "
    "over the G clusters holding such a row. `null` (with a `STDERR_UNDEFINED` warning) when n < 2 or G < 2, "
    "and for a metric with an infinite per-sample value."
)
_CI = (
    "[low, high] = m ± z·SE with z = Φ⁻¹((1 + confidence)/2), the normal quantile; `null` where the standard "
    "error is (or a bound is not finite)."
)


class Stderrs(BaseModel):
    """Standard errors of the means, in the answer's unit (accuracy as a fraction). """ + _SE

    cross_entropy: float | None = Field(description="SE of the mean cross-entropy (ℓᵢ: a row's CE).")
    kl_divergence: float | None = Field(description="SE of the mean KL divergence.")
    entropy: float | None = Field(description="SE of the mean target entropy.")
    accuracy: float | None = Field(description="SE of the accuracy (ℓᵢ: a row's correctness, 0…1).")


Interval = Annotated[list[float] | None, Field(min_length=2, max_length=2)]


class Intervals(BaseModel):
    """Confidence intervals of the means at `settings.confidence`. """ + _CI

    cross_entropy: Interval = Field(description="Interval of the mean cross-entropy.")
    kl_divergence: Interval = Field(description="Interval of the mean KL divergence.")
    entropy: Interval = Field(description="Interval of the mean target entropy.")
    accuracy: Interval = Field(description="Interval of the accuracy.")
    perplexity: Interval = Field(
        description="e^(the cross-entropy interval in nats), whatever the unit: perplexity's interval."
    )


#: A gradient: N×C (N×K) rows, or N numbers for binary predictions given as N numbers.
Gradient = list[list[float | None]] | list[float | None] | None
_GRADIENT = (
    "With `gradient: true` only: ∂ℓᵢ/∂xᵢ, the gradient of each row's reported loss with respect to its "
    "predictions, shaped like `predictions` (0 on ignored rows; null where infinite)."
)


class PerSampleValues(BaseModel):
    """One value per row; `null` for an ignored row (or a value that is not finite)."""

    cross_entropy: list[float | None] = Field(description="Cross-entropy of each row.")
    kl_divergence: list[float | None] = Field(description="KL(target ‖ prediction) of each row.")
    entropy: list[float | None] = Field(description="Entropy of each row's target.")
    gradient: Gradient = Field(None, description=_GRADIENT)


class ScoringWarningModel(BaseModel):
    """Something the caller should know about the numbers."""

    model_config = ConfigDict(title="ScoringWarning")

    code: Literal[
        "ROWS_NOT_NORMALIZED",
        "RENORMALIZED",
        "CLIPPED",
        "NON_FINITE",
        "EMPTY",
        "ZERO_WEIGHT",
        "AGGREGATE_OVERFLOW",
        "STDERR_UNDEFINED",
        "SOFT_TARGETS",
        "STATE_NOT_MERGEABLE",
    ] = Field(
        description=(
            "`ROWS_NOT_NORMALIZED`: prediction rows off 1 were scored as given. `RENORMALIZED`: they were divided "
            "by their sums. `CLIPPED`: probabilities hit the ε clip where the target is non-zero. `NON_FINITE`: "
            "some per-sample values are +infinity (a zero probability on a non-zero target with ε = 0, or a value "
            "beyond float64); they, and the aggregates over them, are reported as null; `count`/`rows` are those "
            "rows. `EMPTY`: nothing was scored. `ZERO_WEIGHT`: the scored rows weigh 0 in total. "
            "`AGGREGATE_OVERFLOW`: an aggregate is too large for float64 although every value it is taken over is "
            "finite — a weighted sum (`sum.*`), or the perplexity e^(mean cross-entropy in nats) past 709.78 nats; "
            "it is reported as null and the message names it (e.g. `sum.cross_entropy`, `mean.perplexity`). "
            "`count` is 0 and `rows` is empty: no row is at fault. Means stay exact however large the weights. "
            "`STDERR_UNDEFINED`: the standard errors and intervals are null because fewer than 2 scored rows of "
            "positive weight (n < 2), or fewer than 2 clusters holding one (G < 2), were given; the message says "
            "which (`count` 0, `rows` empty). `SOFT_TARGETS`: `per_class` or `calibration_bins` was asked for, but "
            "target rows that are not one-hot have no single true class, so `by_class` (or `calibration`) is null; "
            "`count`/`rows` are those rows. `STATE_NOT_MERGEABLE`: `state` is null because the `compat` preset's "
            "means are not the row-weighted means of the per-sample values (its own reduction), which no merge of "
            "states gives; the message says why (`count` 1, `rows` empty)."
        )
    )
    message: str = Field(description="What happened, in words.")
    count: int = Field(description="How many rows it concerns.")
    rows: list[int] = Field(description="The first 20 of those rows (0-based).")


class MulticlassSettings(BaseModel):
    """Every option as resolved, so any number can be audited."""

    compat: Compat = Field(description="The preset whose rules scored the batch (`xent`: xent's own).")
    prediction_type: str = Field(description="`probabilities`, `logits` or `log_probabilities`.")
    label_type: Literal["class_indices", "class_names", "distributions"] = Field(
        description="How the labels were read."
    )
    unit: UnitName = Field(description="Unit of the results.")
    epsilon: float = Field(description="The numeric ε clip.")
    epsilon_applies: bool = Field(description="Whether ε was applied (probabilities only).")
    label_smoothing: float = Field(description="Label smoothing applied to the target.")
    normalization: str = Field(description="Policy for prediction rows whose sum is off 1.")
    tolerance: float = Field(description="How far a row sum may be from 1.")
    ignore_index: int | None = Field(description="The ignored class index, if any.")
    class_weights: list[float] | None = Field(description="The class weights, if given.")
    sample_weights: bool = Field(description="Whether sample weights were given.")
    per_sample: bool = Field(description="Whether the per-sample arrays were returned.")
    gradient: bool = Field(description="Whether `per_sample.gradient` was returned.")
    confidence: float = Field(description="Confidence level of the intervals in `ci`.")


class BinarySettings(BaseModel):
    """Every option as resolved, so any number can be audited."""

    compat: Compat = Field(description="The preset whose rules scored the batch (`xent`: xent's own).")
    prediction_type: str = Field(description="`probabilities` or `logits`.")
    unit: UnitName = Field(description="Unit of the results.")
    epsilon: float = Field(description="The numeric ε clip.")
    epsilon_applies: bool = Field(description="Whether ε was applied (probabilities only).")
    label_smoothing: float = Field(description="Label smoothing applied to the labels.")
    pos_weight: list[float] | None = Field(description="The positive-class weight of each label, if given.")
    sample_weights: bool = Field(description="Whether sample weights were given.")
    labels_per_sample: int | None = Field(description="K, the number of labels per sample (1 for binary).")
    per_sample: bool = Field(description="Whether the per-sample arrays were returned.")
    gradient: bool = Field(description="Whether `per_sample.gradient` was returned.")
    confidence: float = Field(description="Confidence level of the intervals in `ci`.")


_N_CLUSTERS = "G: the clusters of `cluster_ids` holding a scored row of positive weight; null without `cluster_ids`."


class GroupMeans(BaseModel):
    """A group's weighted means over its scored rows (null where undefined)."""

    cross_entropy: float | None = Field(description="Mean cross-entropy of the group's rows.")
    kl_divergence: float | None = Field(description="Mean KL divergence of the group's rows.")
    entropy: float | None = Field(description="Mean target entropy of the group's rows.")
    accuracy: float | None = Field(description="Accuracy over the group's rows.")


class GroupIntervals(BaseModel):
    """Confidence intervals of a group's means at `settings.confidence`. """ + _CI

    cross_entropy: Interval = Field(description="Interval of the group's mean cross-entropy.")
    kl_divergence: Interval = Field(description="Interval of the group's mean KL divergence.")
    entropy: Interval = Field(description="Interval of the group's mean target entropy.")
    accuracy: Interval = Field(description="Interval of the group's accuracy.")


class GroupScores(BaseModel):
    """One group's rows, means, standard errors and intervals: the whole answer's formulas over its rows."""

    n: int = Field(description="Rows of this group.")
    n_scored: int = Field(description="Rows of this group that were scored (not ignored).")
    mean: GroupMeans = Field(description="Weighted means over the group's scored rows.")
    stderr: Stderrs = Field(
        description="Standard error of each mean, over the group's rows (clustered within it with `cluster_ids`); "
        "null with fewer than 2 rows (or clusters) of positive weight."
    )
    ci: GroupIntervals = Field(description="Confidence interval of each mean.")


class ClassScores(BaseModel):
    """One class: over the scored rows whose true class it is."""

    support: float = Field(description="Σ wᵢ over the rows of this true class (their count without weights).")
    mean_cross_entropy: float | None = Field(description="Weighted mean cross-entropy of those rows.")
    stderr: float | None = Field(
        description="Standard error of `mean_cross_entropy` (clustered with `cluster_ids`); null with fewer than 2 "
        "rows (or clusters) of positive weight."
    )
    accuracy: float | None = Field(
        description="Σ wᵢ·[argmax qᵢ = this class] / support over those rows: the weighted recall."
    )
    predicted: float = Field(description="Σ wᵢ over the scored rows whose argmax is this class.")


class CalibrationBin(BaseModel):
    """One confidence bin [lower, upper) (the last one closed at 1)."""

    lower: float = Field(description="k/B.")
    upper: float = Field(description="(k+1)/B.")
    count: int = Field(description="Rows (binary and multi-label: elements) whose confidence falls here.")
    weight: float = Field(description="Σ of their weights (a multi-label element carries its row's weight).")
    mean_confidence: float | None = Field(description="Weighted mean confidence; null when `weight` is 0.")
    accuracy: float | None = Field(
        description="Weighted share correct (binary: the weighted mean of the labels); null when `weight` is 0."
    )


class CalibrationScores(BaseModel):
    """Calibration over B equal-width confidence bins (torchmetrics' binning, but 1.0 falls in the last bin)."""

    model_config = ConfigDict(title="Calibration")

    n_bins: int = Field(description="B, the number of bins (`calibration_bins`).")
    ece: float | None = Field(description="Σ_b (W_b/W)·|acc_b − conf_b|: expected calibration error.")
    mce: float | None = Field(description="max_b |acc_b − conf_b| over the bins of positive weight.")
    rmsce: float | None = Field(description="√(Σ_b (W_b/W)·(acc_b − conf_b)²): root-mean-square calibration error.")
    brier: float | None = Field(
        description="Weighted mean of Σ_c (q_c − y_c)², halved when C = 2 (scikit-learn's `brier_score_loss`); "
        "binary and multi-label: the weighted mean of (q − y)² over the elements."
    )
    bins: list[CalibrationBin] = Field(description="Every bin, the empty ones too.")


_BY_GROUP = "With `groups`: each group's n, means, standard errors and intervals, by group name (sorted); else null."
_BY_CLASS = (
    "With `per_class: true` (`/v1/cross-entropy`): each class's support, mean cross-entropy, its standard error, "
    "accuracy (recall) and predicted weight, keyed by class name (or index as a string); null otherwise, and with "
    "soft targets (`SOFT_TARGETS` warning)."
)
_CALIBRATION = "With `calibration_bins`: ECE, MCE, RMSCE, the Brier score and every bin; else null."


class _ScoreResponse(BaseModel):
    n: int = Field(description="Rows received.")
    n_scored: int = Field(description="Rows scored (not ignored).")
    n_clusters: int | None = Field(description=_N_CLUSTERS)
    unit: UnitName = Field(description="Unit of every value but perplexity and accuracy.")
    mean: Means = Field(description="Weighted means over the scored rows (null where undefined).")
    sum: Sums = Field(description="Weighted sums over the scored rows.")
    stderr: Stderrs = Field(description="Standard error of each mean.")
    ci: Intervals = Field(description="Confidence interval of each mean.")
    by_group: dict[str, GroupScores] | None = Field(description=_BY_GROUP)
    by_class: dict[str, ClassScores] | None = Field(description=_BY_CLASS)
    calibration: CalibrationScores | None = Field(description=_CALIBRATION)
    per_sample: PerSampleValues | None = Field(description="Per-sample arrays of length N, or null if not asked for.")
    warnings: list[ScoringWarningModel] = Field(description="What the caller should know about the numbers.")
    state: ScoringState | None = Field(
        description="The answer's mergeable state: `POST /v1/merge` combines the states of shards into the answer "
        "of all their rows (last in the answer, after `settings`). Null, with a STATE_NOT_MERGEABLE warning, under "
        "a `compat` preset whose means are not the row-weighted means of the per-sample values (see the README)."
    )


class CrossEntropyResponse(_ScoreResponse):
    """Multi-class scores: per-sample and aggregate CE, KL and target entropy."""

    classes: list[str] | None = Field(description="The class names, when given.")
    settings: MulticlassSettings = Field(description="Every option as resolved.")


class BinaryCrossEntropyResponse(_ScoreResponse):
    """Binary / multi-label scores: per-sample and aggregate CE, KL and target entropy."""

    settings: BinarySettings = Field(description="Every option as resolved.")


class ModelScores(BaseModel):
    """One side of a comparison: its means, sums, standard errors and intervals, as a scoring answer has them."""

    mean: Means = Field(description="Weighted means over the scored rows.")
    sum: Sums = Field(description="Weighted sums over the scored rows.")
    stderr: Stderrs = Field(description="Standard error of each mean.")
    ci: Intervals = Field(description="Confidence interval of each mean.")


class PairedDifferenceModel(BaseModel):
    """A paired difference dᵢ = ℓᵢ(model) − ℓᵢ(baseline) over the same rows (negative: the model is better, for a
    loss; for accuracy, positive is better)."""

    model_config = ConfigDict(title="PairedDifference")

    mean: float | None = Field(description="Σwᵢdᵢ / Σwᵢ: the model's mean minus the baseline's.")
    stderr: float | None = Field(description="SE of the mean difference, by the formula of `stderr` applied to dᵢ.")
    ci: Interval = Field(description="mean ± z·SE, z = Φ⁻¹((1 + confidence)/2).")
    z: float | None = Field(description="mean / SE; null when SE is 0 or null.")
    p_value: float | None = Field(
        description="Two-sided normal p-value of no difference, erfc(|z|/√2); null when z is."
    )
    correlation: float | None = Field(
        description="Weighted Pearson correlation of the two models' per-sample values over the scored rows with "
        "wᵢ > 0; null when either is constant there."
    )


class Differences(BaseModel):
    """The paired differences, model − baseline, per metric."""

    cross_entropy: PairedDifferenceModel = Field(description="Difference of the cross-entropies.")
    kl_divergence: PairedDifferenceModel = Field(description="Difference of the KL divergences.")
    accuracy: PairedDifferenceModel = Field(description="Difference of the accuracies (correctness per row).")


class DifferenceValues(BaseModel):
    """The per-sample cross-entropy differences."""

    difference: list[float | None] = Field(
        description="CE(model) − CE(baseline) of each row; null on an ignored row (or where not finite)."
    )
    gradient: Gradient = Field(
        None, description=_GRADIENT + " The model's: the gradient of dᵢ with respect to `predictions`."
    )


class SourcedWarning(ScoringWarningModel):
    """A warning of one side of a comparison."""

    model_config = ConfigDict(title="ComparisonWarning")

    source: Literal["model", "baseline"] = Field(description="Which side's scoring it is about.")


class _CompareResponse(BaseModel):
    n: int = Field(description="Rows received.")
    n_scored: int = Field(description="Rows scored (not ignored).")
    n_clusters: int | None = Field(description=_N_CLUSTERS)
    unit: UnitName = Field(description="Unit of every value but perplexity and accuracy.")
    model: ModelScores = Field(description="The model's scores (`predictions`).")
    baseline: ModelScores = Field(description="The baseline's scores (`baseline_predictions`).")
    difference: Differences = Field(description="Paired differences model − baseline, with SE, interval and test.")
    per_sample: DifferenceValues | None = Field(description="Per-sample differences, or null if not asked for.")
    warnings: list[SourcedWarning] = Field(description="Both sides' warnings, each with its source.")


class MulticlassCompareSettings(MulticlassSettings):
    """Every option as resolved, the baseline's prediction type too."""

    baseline_prediction_type: str = Field(description="How `baseline_predictions` were read.")


class BinaryCompareSettings(BinarySettings):
    """Every option as resolved, the baseline's prediction type too."""

    baseline_prediction_type: str = Field(description="How `baseline_predictions` were read.")


class CrossEntropyCompareResponse(_CompareResponse):
    """A paired comparison of two multi-class models on the same rows."""

    classes: list[str] | None = Field(description="The class names, when given.")
    settings: MulticlassCompareSettings = Field(description="Every option as resolved.")


class BinaryCrossEntropyCompareResponse(_CompareResponse):
    """A paired comparison of two binary / multi-label models on the same rows."""

    settings: BinaryCompareSettings = Field(description="Every option as resolved.")


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "ready"] = Field(description="`ok` (alive) or `ready` (accepting work).")


class Limits(BaseModel):
    """Limits this instance enforces."""

    max_body_bytes: int = Field(
        description="Largest request body accepted, in bytes (also after gzip decompression, and for an NPZ archive)."
    )
    max_rows: int = Field(description="Most rows one request may score.")
    max_classes: int = Field(description="Most classes (or labels per sample) per request.")
    max_cells: int = Field(description="Most rows × classes per request.")
    max_groups: int = Field(description="Most distinct `groups` per request.")
    max_merge_states: int = Field(description="Most states one `POST /v1/merge` request may merge.")
    max_concurrent_scoring: int = Field(description="Scoring requests in progress at once per worker; then 503.")
    body_timeout_seconds: float = Field(description="Longest time a body may take to arrive; then 408.")
    body_min_bytes_per_second: int = Field(
        description="Slowest a body may arrive after the grace period (0: no minimum); then 408."
    )
    body_min_rate_grace_seconds: float = Field(description="How long a body may take to start arriving.")
    memory_budget_bytes: int | None = Field(
        description=(
            "Memory one worker's requests in flight may hold, charged by each one's expected peak; past it, "
            "503 with Retry-After. null: no budget."
        )
    )
    api_keys_required: bool = Field(description="Whether scoring endpoints need an API key.")


class Info(BaseModel):
    """What this instance is and can do."""

    name: str = Field(description="Service name.")
    version: str = Field(description="Service version.")
    units: list[UnitName] = Field(description="Units the results can be given in.")
    prediction_types: dict[str, list[str]] = Field(description="Prediction types accepted by each endpoint.")
    warning_codes: list[str] = Field(description="Codes a response's warnings may carry.")
    limits: Limits = Field(description="The limits in force on this instance.")
