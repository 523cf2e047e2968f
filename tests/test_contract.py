"""One contract: each option's default, range and choices are the same everywhere they appear.

``service/core/contract.py`` defines them once; these tests hold every other place to it: the
core's option dataclasses, the Pydantic request models, the OpenAPI document (request schemas and
the NPZ query parameters), the Python client's keyword arguments and option types, and the flags
of ``xent score``.
"""

import contextlib
import dataclasses
import inspect
import io
import math
import re
import typing
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from service.api.app import create_app
from service.api.schemas import BinaryCrossEntropyRequest, CrossEntropyRequest
from service.client import AsyncClient, Client, Scores
from service.client.wire import DEFAULTS, BinaryCrossEntropyOptions, CrossEntropyOptions
from service.core import BinaryOptions, InvalidOption, MulticlassOptions, score_binary, score_multiclass
from service.core.calibration import check_calibration_bins
from service.core.contract import (
    ARRAY_OPTIONS,
    AUTO,
    AUTO_EPSILON,
    BINARY,
    MULTICLASS,
    OPTIONS,
    Endpoint,
    Option,
    defaults,
    resolve_epsilon,
)
from service.core.intervals import check_confidence
from service.core.summary import answer_summary
from service.settings import Settings

MODELS: dict[Endpoint, type[BaseModel]] = {MULTICLASS: CrossEntropyRequest, BINARY: BinaryCrossEntropyRequest}
CORE: dict[Endpoint, type[Any]] = {MULTICLASS: MulticlassOptions, BINARY: BinaryOptions}
#: Options the core checks where it uses them, not in its option dataclasses.
CORE_CHECKS: dict[str, Any] = {"confidence": check_confidence, "calibration_bins": check_calibration_bins}
CLIENT_METHODS = {MULTICLASS: "cross_entropy", BINARY: "binary_cross_entropy"}
CLIENT_OPTION_TYPES: dict[Endpoint, type[Any]] = {MULTICLASS: CrossEntropyOptions, BINARY: BinaryCrossEntropyOptions}

EVERY_OPTION = [
    pytest.param(endpoint, option, id=f"{endpoint}.{name}")
    for endpoint, options in OPTIONS.items()
    for name, option in options.items()
]
RANGED = [param for param in EVERY_OPTION if param.values[1].bounds]
CHOICES = [param for param in EVERY_OPTION if param.values[1].choices]
_JSON_SCHEMA_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def _literal_values(annotation: Any) -> set[Any]:
    """The values a ``Literal[...]`` (possibly inside a union) admits."""
    if get_origin(annotation) is typing.Literal:
        return set(get_args(annotation))
    return {value for arm in get_args(annotation) for value in _literal_values(arm)}


def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


def _number_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The numeric arm of a property schema (``epsilon`` is ``"auto"`` or a number)."""
    for arm in schema.get("anyOf", [schema]):
        if arm.get("type") in ("number", "integer"):
            return dict(arm)
    raise AssertionError(f"no numeric arm in {schema}")


# --- the contract itself -------------------------------------------------------------------------


def test_every_request_field_but_the_data_is_a_contract_option() -> None:
    for endpoint, model in MODELS.items():
        assert list(model.model_fields) == ["predictions", "labels", *OPTIONS[endpoint]]


def test_array_options_are_the_npz_members_of_the_request_models() -> None:
    members = {name for model in MODELS.values() for name in model.array_fields} - {"predictions", "labels"}  # type: ignore[attr-defined]
    assert members == ARRAY_OPTIONS


def test_auto_epsilon_is_float64_machine_epsilon() -> None:
    assert AUTO_EPSILON == 2.220446049250313e-16
    assert resolve_epsilon(AUTO) is None
    assert resolve_epsilon(None) is None
    assert resolve_epsilon(0) == 0.0
    assert resolve_epsilon(1e-7) == 1e-7


@pytest.mark.parametrize(
    ("interval", "option"),
    [
        ("[0, 1]", Option("x", 0, "", ge=0, le=1)),
        ("(0, 1)", Option("x", 0, "", gt=0, lt=1)),
        ("[0, 0.5)", Option("x", 0, "", ge=0, lt=0.5)),
    ],
)
def test_interval_notation(interval: str, option: Option) -> None:
    assert option.interval == interval


# --- the core ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "option"), EVERY_OPTION)
def test_core_option_defaults_are_the_contract_defaults(endpoint: Endpoint, option: Option) -> None:
    fields = {field.name: field for field in dataclasses.fields(CORE[endpoint])}
    if option.name not in fields:
        return  # arrays and per_sample are arguments of the scoring function or the answer, not options
    default = fields[option.name].default
    if option.name == "epsilon":
        assert default is None
        assert resolve_epsilon(option.default) is None
    else:
        assert default == option.default


def _edges(option: Option) -> tuple[list[float], list[float]]:
    """Values at or just inside ``option``'s bounds, and values just outside them (NaN is outside every range)."""
    inside: list[float] = []
    outside: list[float] = [math.nan]
    for bound, value in option.bounds.items():
        edge = float(value)
        toward_inside = math.nextafter(edge, math.inf if bound in ("ge", "gt") else -math.inf)
        toward_outside = math.nextafter(edge, -math.inf if bound in ("ge", "gt") else math.inf)
        inclusive = bound in ("ge", "le")
        inside.append(edge if inclusive else toward_inside)
        outside.append(toward_outside if inclusive else edge)
    return inside, outside


def _base(endpoint: Endpoint) -> dict[str, Any]:
    return {"labels": [1], "predictions": [[0.5, 0.5]] if endpoint == MULTICLASS else [0.5]}


@pytest.mark.parametrize(("endpoint", "option"), [p for p in RANGED if p.values[1].name != "ignore_index"])
def test_core_and_schema_accept_and_refuse_the_same_edges(endpoint: Endpoint, option: Option) -> None:
    inside, outside = _edges(option)
    core = CORE_CHECKS.get(option.name) or (lambda value: CORE[endpoint](**{option.name: value}))
    model = MODELS[endpoint]
    for value in inside:
        assert option.contains(value)
        core(value)
        model.model_validate({**_base(endpoint), option.name: value})
    for value in outside:
        assert not option.contains(value)
        with pytest.raises(InvalidOption, match=f"^{option.name}: .* {re.escape(option.interval)}"):
            core(value)
        with pytest.raises(ValidationError):
            model.model_validate({**_base(endpoint), option.name: value})


def test_ignore_index_is_an_int64_in_the_schema() -> None:
    option = OPTIONS[MULTICLASS]["ignore_index"]
    assert (option.ge, option.le) == (-(2**63), 2**63 - 1)
    for value in (-(2**63), 2**63 - 1):
        CrossEntropyRequest.model_validate({**_base(MULTICLASS), "ignore_index": value})
    for value in (-(2**63) - 1, 2**63):
        with pytest.raises(ValidationError):
            CrossEntropyRequest.model_validate({**_base(MULTICLASS), "ignore_index": value})


# --- the request models and the OpenAPI document -------------------------------------------------


@pytest.mark.parametrize(("endpoint", "option"), EVERY_OPTION)
def test_schema_fields_carry_the_contract(endpoint: Endpoint, option: Option) -> None:
    field = MODELS[endpoint].model_fields[option.name]
    assert field.default == option.default
    assert field.description == option.description
    if option.choices:
        assert _literal_values(field.annotation) == set(option.choices)


@pytest.mark.parametrize(("endpoint", "option"), EVERY_OPTION)
def test_openapi_request_schema_carries_the_contract(endpoint: Endpoint, option: Option) -> None:
    schema = _openapi()["components"]["schemas"][MODELS[endpoint].__name__]["properties"][option.name]
    assert schema["default"] == option.default
    assert schema["description"] == option.description
    if option.choices:
        assert schema["enum"] == list(option.choices)
    if option.bounds:
        numeric = _number_schema(schema)
        assert {key: numeric[key] for key in _JSON_SCHEMA_BOUNDS.values() if key in numeric} == {
            _JSON_SCHEMA_BOUNDS[bound]: value for bound, value in option.bounds.items()
        }


@pytest.mark.parametrize(("endpoint", "option"), EVERY_OPTION)
def test_npz_query_parameters_carry_the_contract(endpoint: Endpoint, option: Option) -> None:
    operation = _openapi()["paths"][f"/v1/{endpoint}"]["post"]
    # Documented under the NPZ media type alone: with a JSON body the options go in the body.
    assert "parameters" not in operation
    npz = operation["requestBody"]["content"]["application/x-npz"]
    parameters = {parameter["name"]: parameter for parameter in npz["x-query-parameters"]}
    if option.array:
        assert option.name not in parameters  # an NPZ member, not a query parameter
        return
    parameter = parameters[option.name]
    assert parameter["in"] == "query"
    assert parameter["description"] == option.description
    assert parameter["schema"].get("default") == option.default  # FastAPI leaves out a null default
    assert f"| `{option.name}` |" in operation["requestBody"]["description"]  # the table Swagger UI shows
    if option.choices:
        assert parameter["schema"]["enum"] == list(option.choices)
    if option.bounds:
        numeric = _number_schema(parameter["schema"])
        assert {key: numeric[key] for key in _JSON_SCHEMA_BOUNDS.values() if key in numeric} == {
            _JSON_SCHEMA_BOUNDS[bound]: value for bound, value in option.bounds.items()
        }


# --- the Python client ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", [Client, AsyncClient])
@pytest.mark.parametrize(("endpoint", "option"), EVERY_OPTION)
def test_client_keywords_carry_the_contract(client: type[Any], endpoint: Endpoint, option: Option) -> None:
    method = getattr(client, CLIENT_METHODS[endpoint])
    parameter = inspect.signature(method).parameters[option.name]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default == option.default
    if option.choices:
        hints = typing.get_type_hints(method)
        assert _literal_values(hints[option.name]) - {AUTO} == set(option.choices)


@pytest.mark.parametrize("client", [Client, AsyncClient])
@pytest.mark.parametrize("endpoint", list(OPTIONS))
def test_client_methods_take_every_option_and_no_other(client: type[Any], endpoint: Endpoint) -> None:
    parameters = inspect.signature(getattr(client, CLIENT_METHODS[endpoint])).parameters
    assert [name for name in parameters if name not in ("self", "labels", "predictions", "transport")] == list(
        OPTIONS[endpoint]
    )


@pytest.mark.parametrize("endpoint", list(OPTIONS))
def test_client_option_types_and_defaults_carry_the_contract(endpoint: Endpoint) -> None:
    option_type = CLIENT_OPTION_TYPES[endpoint]
    hints = typing.get_type_hints(option_type)
    assert list(hints) == list(OPTIONS[endpoint])
    for name, option in OPTIONS[endpoint].items():
        if option.choices:
            assert _literal_values(hints[name]) - {AUTO} == set(option.choices)
    assert DEFAULTS[endpoint] == defaults(endpoint)


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_the_sequence_methods_take_the_sequence_options_with_their_defaults(client: type[Any]) -> None:
    from service.core.contract import SEQUENCE_OPTIONS

    forms = ["token_logprobs", "completions", "chat", "prompt_logprobs", "prompt_token_ids", "tgi_details"]
    parameters = inspect.signature(client.score_sequences).parameters
    assert [name for name in parameters if name != "self"] == [*forms, *SEQUENCE_OPTIONS]
    shared = ["document_ids", "num_bytes", "num_words", "unit", "confidence"]
    compared = inspect.signature(client.compare_sequences).parameters
    assert [name for name in compared if name != "self"] == ["model", "baseline", *shared]
    for name, option in SEQUENCE_OPTIONS.items():
        assert parameters[name].default == option.default
        if name in shared:
            assert compared[name].default == option.default


# --- xent score ----------------------------------------------------------------------------------


def _score_help() -> str:
    from service.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["score", "--help"])
    return " ".join(out.getvalue().split())


@pytest.mark.parametrize(("endpoint", "option"), CHOICES)
def test_cli_flags_offer_the_contract_choices(endpoint: Endpoint, option: Option) -> None:
    text = _score_help()
    flag = "--" + option.name.replace("_", "-")
    if endpoint == BINARY and option.name == "prediction_type":
        choices = OPTIONS[MULTICLASS]["prediction_type"].choices  # one flag serves both endpoints
        assert set(option.choices) <= set(choices)
    else:
        choices = option.choices
    assert f"{flag} {{{','.join(choices)}}}" in text


# --- the answer's shape --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("summary"),
    [
        pytest.param(
            answer_summary(
                score_multiclass(["B"], [[0.228, 0.619, 0.153]], classes=["A", "B", "C"]),
                per_sample=True,
                extra={"classes": ["A", "B", "C"]},
            ),
            id="multiclass",
        ),
        pytest.param(answer_summary(score_binary([0, 1], [0.1, 0.8]), per_sample=False), id="binary"),
    ],
)
def test_the_client_reads_and_writes_the_answer_shape_the_core_builds(summary: dict[str, Any]) -> None:
    scores = Scores.from_summary(summary, None)
    assert scores.summary() == summary
    assert list(vars(scores.mean)) == list(summary["mean"])
    assert list(vars(scores.sum)) == list(summary["sum"])
