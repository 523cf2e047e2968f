"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

With no keys configured every request is let through (and start-up logs one warning
that the service is open). Keys are compared in constant time, against every
configured key, so neither the answer nor its timing tells which key came close.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.api.problems import ProblemKind
from service.api.state import service_state

_bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`, when the service runs with XENT_API_KEYS or XENT_API_KEYS_FILE.",
)
_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="`X-API-Key: <key>`, the same keys as the bearer scheme.",
)


class ApiKeys:
    """The accepted keys, kept as SHA-256 digests so every comparison has the same length."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(key) for key in keys if key]

    @classmethod
    def from_settings(cls, inline: str | None, file: Path | None) -> ApiKeys:
        """Keys from a comma-separated string and/or a file of one key per line (# comments skipped)."""
        keys = [key.strip() for key in (inline or "").split(",")]
        if file is not None:
            lines = file.read_text(encoding="utf-8").splitlines()
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return cls([key for key in keys if key])

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (otherwise the service is open)."""
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        """Constant-time check of ``key`` against every configured key."""
        candidate = _digest(key)
        found = False
        for digest in self._digests:  # no early exit: the time does not depend on which key matched
            found |= hmac.compare_digest(candidate, digest)
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def offered_key(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a request offers: ``X-API-Key`` if sent (and not empty), else an ``Authorization: Bearer`` token.

    One pass over the raw ASGI header list (names arrive lower-cased), reading each header's first
    occurrence, exactly as FastAPI's ``APIKeyHeader`` and ``HTTPBearer`` (``auto_error=False``) would.
    """
    header: bytes | None = None
    authorization: bytes | None = None
    for name, value in raw_headers:
        if name == b"x-api-key":
            if header is None:
                header = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    if header:
        return header.decode("latin-1")
    if authorization:
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        credentials = credentials.strip()
        if scheme and credentials and scheme.lower() == "bearer":
            return credentials
    return None


def check_api_key(keys: ApiKeys, raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Return when keys are off or the request carries a configured key; raise the 401 problem otherwise."""
    if not keys.enabled:
        return
    offered = offered_key(raw_headers)
    if offered is None:
        detail = "this endpoint needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>"
        raise ProblemKind.UNAUTHORIZED.error(detail)
    if not keys.accepts(offered):
        raise ProblemKind.UNAUTHORIZED.error("the API key is not valid")


async def require_api_key(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008 - FastAPI's dependency idiom
    header: str | None = Security(_header),
) -> None:
    """The key check as a FastAPI dependency (for ``/metrics``; the scoring routes call :func:`check_api_key`).

    The two ``Security`` parameters put both schemes in the OpenAPI document; the check itself
    reads the headers with :func:`offered_key`, so every protected route accepts the same keys.
    """
    del bearer, header
    check_api_key(service_state(request).api_keys, request.scope["headers"])
