"""Event records: what storefronts and files send, validated into rows for the events table."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

import msgspec

from service.errors import FieldProblem
from service.records.common import Id, NonNegative, Timestamp, check_id, parse_timestamp

EventType = Literal[
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "wishlist",
    "purchase",
    "refund",
    "rate",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class EventIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One thing a user did with an item."""

    user_id: Id
    item_id: Id
    event: EventType
    timestamp: Timestamp
    channel: Id | None = None
    quantity: NonNegative | None = None
    price: NonNegative | None = None
    event_id: Id | None = None
    session_id: Id | None = None
    recommendation_id: Id | None = None  # from the answer the item was shown in, for its click-through


def event_row(record: EventIn, *, channels: tuple[str, ...], now: datetime | None = None) -> dict[str, Any]:
    """The events-table row for a decoded record; raises FieldProblem naming the field."""
    event_id, session_id = record.event_id, record.session_id
    ids = record.user_id + record.item_id + (event_id or "") + (session_id or "")
    if not (
        ids.isprintable()
        and record.user_id.strip()
        and record.item_id.strip()
        and (event_id is None or event_id.strip())
        and (session_id is None or session_id.strip())
    ):
        for key in ("user_id", "item_id", "event_id", "session_id"):  # find which, for the message
            check_id(key, getattr(record, key))
    try:
        occurred_at = parse_timestamp(record.timestamp, now=now)
    except ValueError as exc:
        raise FieldProblem("timestamp", str(exc)) from None
    if record.channel is not None and record.channel not in channels:
        raise FieldProblem("channel", f"unknown channel {record.channel!r}; known: {', '.join(channels)}")
    return {
        "event_id": record.event_id,
        "user_id": record.user_id,
        "item_id": record.item_id,
        "event": record.event,
        "occurred_at": occurred_at,
        "channel": record.channel,
        "quantity": record.quantity,
        "price": record.price,
        "session_id": record.session_id,
        "recommendation_id": record.recommendation_id,
    }
