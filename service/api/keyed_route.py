"""``KeyedRoute``: the scoring routes' route class, documented by FastAPI, run without dependency solving."""

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fastapi import Depends, Request, Response, params
from fastapi.routing import APIRoute

from service.api.policy.auth import check_api_key, require_api_key
from service.api.state import service_state

Endpoint = Callable[[Request], Awaitable[Response]]


class KeyedRoute(APIRoute):
    """A route that needs the API key: documented by FastAPI like any other, run as a plain Starlette endpoint.

    The endpoint takes the ``Request`` alone and returns a ``Response``, so there is nothing for
    FastAPI to solve per request (no dependency tree, no parameters, no thread hop for a sync
    dependency): the handler checks the key with a plain call, then awaits the endpoint.
    ``Depends(require_api_key)`` is declared on the route only for the OpenAPI document, which
    lists both key schemes on the operation from it; any other dependency is refused here, since
    it would be documented but never run.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        dependencies: Sequence[params.Depends] | None = None,
        **kwargs: Any,
    ) -> None:
        unsupported = [d.dependency for d in dependencies or () if d.dependency is not require_api_key]
        if unsupported:
            raise TypeError(f"{path}: a KeyedRoute runs no dependencies, so it cannot take {unsupported}")
        parameters = list(inspect.signature(endpoint).parameters.values())
        if [parameter.annotation for parameter in parameters] != [Request]:
            raise TypeError(f"{path}: a KeyedRoute endpoint takes the Request alone, not {parameters}")
        super().__init__(path, endpoint, dependencies=[Depends(require_api_key)], **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            check_api_key(service_state(request).api_keys, request.scope["headers"])
            return await endpoint(request)

        return handler
