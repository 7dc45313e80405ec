"""HTTP calls to provider APIs over one shared aiohttp session, and what their failures mean.

The line that matters for "never send twice": a failure before the request was written
(no connection, DNS) is safe to retry; a timeout or a dropped connection after it was written
is `Unknown`, because the provider may have acted on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from service.messaging.channels.base import Failed, Outcome, Retry, Unknown

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: Any  # decoded JSON, or the text when the body is not JSON

    def field(self, *path: str) -> Any:
        value = self.body
        for step in path:
            if not isinstance(value, dict):
                return None
            value = value.get(step)
        return value


class NotDelivered(Exception):
    """A call that did not get an answer; `outcome` says whether it may be repeated."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(getattr(outcome, "reason", ""))
        self.outcome = outcome


class HttpClient:
    """One aiohttp session per process, created on first use (it needs a running loop)."""

    def __init__(self, timeout_seconds: float = DEFAULT_TIMEOUT, connections: int = 64) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=min(5.0, timeout_seconds))
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers={"User-Agent": "shopcast"},
            )
        return self._session

    async def call(self, method: str, url: str, **kwargs: Any) -> Reply:
        """Make the request; raise NotDelivered with Retry (never sent) or Unknown (maybe sent)."""
        try:
            async with self.session().request(method, url, **kwargs) as response:
                text = await response.text()
                try:
                    body: Any = await response.json(content_type=None) if text else None
                except ValueError:
                    body = text
                return Reply(response.status, dict(response.headers), body)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL) as exc:
            raise NotDelivered(Retry(f"could not connect: {type(exc).__name__}")) from exc
        except TimeoutError as exc:
            raise NotDelivered(Unknown("no answer before the timeout; the provider may have it")) from exc
        except aiohttp.ClientError as exc:
            raise NotDelivered(Unknown(f"connection lost after sending: {type(exc).__name__}")) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def retry_after(headers: dict[str, str], default: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or an HTTP date) or a reset epoch header."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return default
    reset = headers.get("x-rate-limit-reset") or headers.get("X-Rate-Limit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return default
    return default


def by_status(reply: Reply, what: str) -> Outcome:
    """The usual reading of an unsuccessful status: 429 and 5xx transient, other 4xx permanent."""
    if reply.status == 429:
        return Retry(f"{what}: rate limited (429)", retry_after(reply.headers))
    if reply.status >= 500:
        return Retry(f"{what}: provider error {reply.status}", retry_after(reply.headers))
    if reply.status in (401, 403):
        return Failed(f"{what}: credentials or permission refused ({reply.status})")
    return Failed(f"{what}: refused ({reply.status})")
