"""What a running service holds, typed: built once by ``create_app``, read through :func:`service_state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

if TYPE_CHECKING:  # the objects' modules read the state too
    from service.api.operations.metrics import Metrics
    from service.api.policy.admission import MemoryBudget
    from service.api.policy.auth import ApiKeys
    from service.api.policy.slots import ScoringSlots
    from service.api.transport.limits import Limits
    from service.settings import Settings


@dataclass(eq=False, slots=True)
class ServiceState:
    """The settings and the runtime objects built from them; only ``ready`` changes after start-up."""

    settings: Settings
    api_keys: ApiKeys
    limits: Limits
    scoring_slots: ScoringSlots
    #: What this worker's requests in flight may hold of its memory.
    memory: MemoryBudget
    metrics: Metrics
    #: Whether the service takes traffic: after the start-up self-test, until a stop signal.
    ready: bool = False


def service_state(connection: HTTPConnection) -> ServiceState:
    """The state of the app that is answering ``connection`` (``app.state.xent``)."""
    state: ServiceState = connection.app.state.xent
    return state
