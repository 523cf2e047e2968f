"""Liveness, readiness and instance information."""

from fastapi import APIRouter, Request

from service import __version__
from service.api.problems import ProblemKind, problem_responses
from service.api.schemas import Health, Info, Limits
from service.api.state import service_state
from service.core import PredictionType, Unit, WarningCode

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Health:
    """200 while the process is up; it checks nothing else, so load never fails it."""
    return Health(status="ok")


@router.get("/readyz", summary="Readiness: start-up finished", responses=problem_responses(503))
async def readyz(request: Request) -> Health:
    """200 once start-up (including a self-test on the reference example) has finished; 503 before."""
    if not service_state(request).ready:
        raise ProblemKind.NOT_READY.error("the service is starting or stopping")
    return Health(status="ready")


@router.get("/v1/info", summary="Version, units and limits", tags=["scoring"])
async def info(request: Request) -> Info:
    """What this instance is and what it accepts."""
    state = service_state(request)
    settings = state.settings
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
            max_concurrent_scoring=settings.max_concurrent_scoring,
            body_timeout_seconds=settings.body_timeout_seconds,
            api_keys_required=state.api_keys.enabled,
        ),
    )
