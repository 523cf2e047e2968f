"""The application factory: settings in, a ready FastAPI app out."""

import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from service import __version__
from service.api import (  # noqa: F401 - the sequence and merge modules add their routes to scoring.router
    merge_route,
    scoring,
    sequence_compare_route,
    sequence_routes,
)
from service.api.operations import health, metrics
from service.api.operations.docs import install_docs
from service.api.operations.drain import not_ready_on_stop_signal
from service.api.operations.memory import tune_allocator
from service.api.operations.metrics import Metrics
from service.api.operations.request_id import RequestIdMiddleware
from service.api.operations.telemetry import RequestTelemetryMiddleware
from service.api.policy.admission import MemoryBudget, memory_budget
from service.api.policy.auth import ApiKeys, require_api_key
from service.api.policy.slots import ScoringSlots
from service.api.problems import Problem, install_error_handlers, problem_responses
from service.api.state import ServiceState
from service.api.transport import Limits
from service.api.transport.body import BODY_PLACER_KEY, KeptMapPlacer
from service.core import score_multiclass
from service.logs import REQUEST_LOGGER
from service.settings import Settings

DESCRIPTION = """\
Scores batches of label / prediction pairs: per-sample and mean **cross-entropy**, **KL divergence**
and target **entropy** (CE = H + KL), in nats, bits or hartleys, for multi-class and binary /
multi-label problems. Every number is computed in float64; bad input gets a 4xx
`application/problem+json` answer naming the field, row and column.

Try it: `curl --json '{"labels":[1],"predictions":[[0.228,0.619,0.153]]}' localhost:8000/v1/cross-entropy`
"""

logger = logging.getLogger("service.api")


def _self_test() -> None:
    """Score the reference example; refuse to become ready if the math is off."""
    value = score_multiclass([1], [[0.228, 0.619, 0.153]]).mean.cross_entropy
    if value is None or abs(value - 0.4796500062975) > 1e-9:
        raise RuntimeError(f"self-test failed: reference example scored {value}, expected 0.479650")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Ready after the self-test; not ready again as soon as a stop signal arrives. The lifespan state offers the
    server what places a large body before the app is called (``BODY_PLACER_KEY``: ``xent serve`` reads it)."""
    state: ServiceState = app.state.xent
    tune_allocator()
    _self_test()
    if not state.api_keys.enabled:
        logger.warning(
            "no API keys are configured (XENT_API_KEYS / XENT_API_KEYS_FILE): "
            "anyone who can reach this service can use it"
        )
    state.ready = True

    def mark_not_ready() -> None:
        state.ready = False

    # What exists once the app has started (its modules, routes, schemas: some 80,000 objects) is left out of the
    # garbage collector's full passes, which would otherwise walk all of it now and then mid-request (23 ms here).
    gc.freeze()
    try:
        with not_ready_on_stop_signal(mark_not_ready):
            yield {BODY_PLACER_KEY: KeptMapPlacer(state.limits, scoring.BODY_ROUTES)}
    finally:
        gc.unfreeze()
    state.ready = False


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the schemas it points at without FastAPI knowing: the raw-body routes'
    request models and the problem document (``problem_responses`` refers to it by ``$ref``)."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [*scoring.REQUEST_MODELS, Problem]
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    _restore_examples(document, app.routes)
    app.openapi_schema = document
    return document


def _restore_examples(document: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Put each example back as the route gives it, and each operation's responses in status order.

    FastAPI leaves every null out of the document, examples included; but a null in an answer
    (``"classes": null``, a mean of nothing) is what the service sends, so the examples are restored.
    """
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            documented = [(route.responses.get(int(s), {}), r) for s, r in operation["responses"].items()]
            body = (route.openapi_extra or {}).get("requestBody", {})
            for given, written in [*documented, (body, operation.get("requestBody", {}))]:
                for media_type, content in given.get("content", {}).items():
                    for key in ("example", "examples"):
                        if key in content:
                            written["content"][media_type][key] = content[key]
            operation["responses"] = dict(sorted(operation["responses"].items()))


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Without ``settings`` they are read from the ``XENT_*`` environment."""
    app = FastAPI(
        title="xent",
        version=__version__,
        summary="Cross-entropy scoring service",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from install_docs, with local assets
        redoc_url=None,
        openapi_tags=[
            {"name": "scoring", "description": "Score predictions against labels."},
            {"name": "operations", "description": "Health checks for orchestrators."},
        ],
        # FastAPI's built-in OpenTelemetry hooks ask the OpenTelemetry API for its providers on every
        # request (~10 µs, a twentieth of a small request); xent's observability is its Prometheus
        # metrics and JSON logs (service/api/operations/telemetry.py), so they are off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    settings = settings or Settings()
    app.state.xent = state = ServiceState(
        settings=settings,
        # Read once here: a missing or unreadable keys file stops start-up instead of leaving the service open.
        api_keys=ApiKeys.from_settings(settings.api_keys, settings.api_keys_file),
        limits=Limits.from_settings(settings),
        scoring_slots=ScoringSlots(settings.max_concurrent_scoring),
        memory=MemoryBudget(memory_budget(settings.memory_budget_bytes, settings.workers)),
        metrics=Metrics(multiprocess_dir=settings.metrics_dir),
    )
    install_error_handlers(app)
    # Every operation can fail unexpectedly or be refused by the server layer: the OpenAPI document says how.
    unexpected = problem_responses()
    # The scoring routes themselves, not an included router: one regex match per request instead of two
    # rounds of matching (FastAPI keeps an included router as a route of its own). They declare the 500.
    app.router.routes.extend(scoring.router.routes)  # sequence_routes adds its routes to scoring.router
    app.include_router(health.router, responses=unexpected)
    install_docs(app)
    # --- Metrics, request log and X-Request-ID. Keep these two middlewares the last ones added: the
    # last added is the outermost, so they see (and tag) every answer, other middlewares' refusals too.
    app.include_router(
        metrics.router,
        dependencies=[Depends(require_api_key)] if settings.metrics_require_key else [],
        responses=unexpected,
    )
    app.add_middleware(RequestTelemetryMiddleware, metrics=state.metrics, logger=logging.getLogger(REQUEST_LOGGER))
    app.add_middleware(RequestIdMiddleware)
    # --- end of metrics, request log and X-Request-ID.
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
