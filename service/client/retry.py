"""When and how long to wait before trying a request again."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from service.client.errors import TransportError

#: 503: the service is starting, stopping or overloaded; 502 and 504: a proxy in front of it says the same.
RETRY_STATUSES = frozenset({502, 503, 504})
#: Failures before the service saw the request or answered: scoring is a pure function, so sending the
#: same request again is safe. A read timeout is not here: the service is busy with the request, and a
#: second copy would only add to its load.
RETRY_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Retry:
    """Up to ``attempts`` more tries after the first, waiting ``backoff``·2^k seconds (at most ``max_delay``),
    each wait scaled by a random factor in [0.5, 1] so that many clients do not come back in step."""

    attempts: int = 3
    backoff: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); a server's ``Retry-After`` sets the floor."""
        wait = min(self.max_delay, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)  # jitter, not cryptography
        if retry_after is not None and retry_after.strip().isdigit():
            wait = max(wait, min(float(retry_after), self.max_delay))
        return wait


class Attempts:
    """The tries of one request, and what follows each: read the answer, wait and try again, or give up."""

    def __init__(self, retry: Retry, url: str) -> None:
        self.retry, self.url, self.tries = retry, url, 0

    def failed(self, error: httpx.TransportError) -> float:
        """Seconds to wait before trying again after ``error``; the client's ``TransportError`` if not to."""
        self.tries += 1
        if isinstance(error, RETRY_ERRORS) and self.tries <= self.retry.attempts:
            return self.retry.delay(self.tries - 1)
        raise transport_error(error, self.url, self.tries) from error

    def answered(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again after ``response`` (a 503 or kin); None: read this answer."""
        self.tries += 1
        if response.status_code in RETRY_STATUSES and self.tries <= self.retry.attempts:
            return self.retry.delay(self.tries - 1, response.headers.get("retry-after"))
        return None


def transport_error(error: httpx.TransportError, url: str, tries: int) -> TransportError:
    """The client's error for a transport failure that retries did not cure."""
    if isinstance(error, httpx.TimeoutException):
        reason = f"no answer in time ({type(error).__name__}); raise `timeout` for larger batches"
    else:
        reason = f"{type(error).__name__}: {error}"
    return TransportError(f"could not score at {url} after {tries} tries: {reason}")
