"""Liveness, readiness and instance information."""

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from service import __version__
from service.api.problems import ProblemKind, problem_responses
from service.api.schemas import Health, Info, Limits
from service.api.state import service_state
from service.core import PredictionType, Unit, WarningCode
from service.settings import Settings

#: No router-wide tag: each operation names its one tag (one tag, one place in Swagger UI's list).
router = APIRouter()


def _example(answer: BaseModel) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI 200 example of an operation that answers ``answer`` (instead of Swagger UI's "string")."""
    return {200: {"content": {"application/json": {"example": answer.model_dump(mode="json")}}}}


@router.get(
    "/healthz", summary="Liveness: the process answers", tags=["operations"], responses=_example(Health(status="ok"))
)
async def healthz() -> Health:
    """200 while the process is up; it checks nothing else, so load never fails it."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: start-up finished",
    tags=["operations"],
    responses={**_example(Health(status="ready")), **problem_responses(ProblemKind.NOT_READY)},
)
async def readyz(request: Request) -> Health:
    """200 once start-up (including a self-test on the reference example) has finished; 503 before.

    A full memory budget or full scoring slots do not make it 503: they last seconds, and each request
    is already refused with 503 + Retry-After; taking every busy replica out of the load balancer at
    once would turn a burst into an outage.
    """
    if not service_state(request).ready:
        raise ProblemKind.NOT_READY.error("the service is starting or stopping")
    return Health(status="ready")


def describe(settings: Settings, *, api_keys_required: bool, memory_budget_bytes: int | None) -> Info:
    """What an instance with ``settings`` (and this memory budget, which it derives at start-up) is and accepts."""
    return Info(
        name="xent",
        version=__version__,
        units=[unit.value for unit in Unit],
        prediction_types={
            "/v1/cross-entropy": [kind.value for kind in PredictionType],
            "/v1/binary-cross-entropy": [PredictionType.PROBABILITIES.value, PredictionType.LOGITS.value],
        },
        warning_codes=[code.value for code in WarningCode],
        limits=Limits(
            max_body_bytes=settings.max_body_bytes,
            max_rows=settings.max_rows,
            max_classes=settings.max_classes,
            max_cells=settings.max_cells,
            max_groups=settings.max_groups,
            max_merge_states=settings.max_merge_states,
            max_concurrent_scoring=settings.max_concurrent_scoring,
            body_timeout_seconds=settings.body_timeout_seconds,
            body_min_bytes_per_second=settings.body_min_bytes_per_second,
            body_min_rate_grace_seconds=settings.body_min_rate_grace_seconds,
            memory_budget_bytes=memory_budget_bytes,
            api_keys_required=api_keys_required,
        ),
    )


#: The example: an instance with the default settings but XENT_MEMORY_BUDGET_BYTES=1 GiB (the default budget
#: depends on the machine) and no keys. ``model_construct`` reads no XENT_* variable: the document is the same anywhere.
EXAMPLE_SETTINGS = Settings.model_construct(memory_budget_bytes=2**30)
_EXAMPLE_INFO = describe(
    EXAMPLE_SETTINGS, api_keys_required=False, memory_budget_bytes=EXAMPLE_SETTINGS.memory_budget_bytes
)


@router.get("/v1/info", summary="Version, units and limits", tags=["scoring"], responses=_example(_EXAMPLE_INFO))
async def info(request: Request) -> Info:
    """What this instance is and what it accepts."""
    state = service_state(request)
    return describe(state.settings, api_keys_required=state.api_keys.enabled, memory_budget_bytes=state.memory.total)
