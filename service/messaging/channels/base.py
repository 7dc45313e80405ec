"""The one interface every way out implements, and what a send can come back with.

    Outcome
    ├── Sent       the provider took it (its id when it gives one)
    ├── Retry      transient: try again later (after `after` seconds when the provider says)
    ├── Failed     permanent: never retried (bad address, content refused, credentials wrong)
    └── Unknown    it may have gone through (timeout after the request was written): never resent
                   blindly, unless the channel can make a resend harmless (`resend_safe`)

A channel turns exceptions and provider answers into these; the sender records them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Sent:
    provider_id: str | None = None
    stale_tokens: tuple[str, ...] = ()  # push tokens the provider reported unregistered


@dataclass(frozen=True)
class Retry:
    reason: str
    after: float | None = None


@dataclass(frozen=True)
class Failed:
    reason: str
    stale_tokens: tuple[str, ...] = ()
    bounced: bool = False  # the address does not exist (a hard bounce): suppress it


@dataclass(frozen=True)
class Unknown:
    reason: str


Outcome = Sent | Retry | Failed | Unknown


@dataclass(frozen=True)
class Envelope:
    """One message to deliver: its delivery key (idempotency) and the channel's payload."""

    key: str
    payload: dict[str, Any]
    user_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Channel(Protocol):
    name: str
    resend_safe: bool  # the receiver dedupes on the delivery key, so an Unknown may be retried

    async def send(self, envelope: Envelope) -> Outcome: ...

    async def close(self) -> None: ...


class ChannelNotConfigured(Exception):
    """A message asked for a channel that has no provider configured."""
