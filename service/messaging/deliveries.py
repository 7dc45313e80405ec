"""The durable outbox: every message is a `deliveries` row before anything is sent.

add      insert a pending row (its `key` is unique: adding the same message again returns
         the row already there, which is how idempotency keys and "one per campaign, user
         and channel" work)
claim    move up to N due rows to `sending`, stamped with the worker and a claim deadline:
         on PostgreSQL one UPDATE … RETURNING of rows chosen FOR UPDATE SKIP LOCKED, so any
         number of workers never claim the same row (SQLite: one writer at a time)
record   the outcome of one attempt: sent, failed, unknown, skipped (a campaign message that
         could not be rendered or is no longer wanted), or back to pending with a delay
held     a paused campaign's pending rows wait as `held` (never claimed) until it resumes
recover  `sending` rows past their claim deadline were in flight when a worker died: they
         become `unknown` (the send may have gone out), or pending again when the channel
         dedupes on the key (`resend_safe`)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.security.crypto import PersonalDataCipher
from service.storage.tables import UtcDateTime, deliveries

STATUSES = ("pending", "held", "sending", "sent", "failed", "unknown", "skipped", "cancelled")
FINAL = ("sent", "failed", "unknown", "skipped", "cancelled")
STAMP = UtcDateTime()
LOST_IN_FLIGHT = "in flight when its worker stopped; it may have gone out, so it is not resent"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NewDelivery:
    key: str
    kind: str  # message | social | campaign
    channel: str
    payload: dict[str, Any]
    user_id: str | None = None
    template: str | None = None
    post_id: int | None = None
    not_before: datetime | None = None
    campaign_id: int | None = None


@dataclass(frozen=True)
class Delivery:
    id: int
    key: str
    kind: str
    channel: str
    user_id: str | None
    template: str | None
    post_id: int | None
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    provider_id: str | None
    error: str | None
    sent_at: datetime | None
    created_at: datetime
    campaign_id: int | None = None
    payload: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """What one attempt leaves in its row."""

    delivery: Delivery
    status: str
    error: str | None = None
    provider_id: str | None = None
    retry_at: datetime | None = None


class DeliveryStore:
    def __init__(self, engine: AsyncEngine, cipher: PersonalDataCipher, max_attempts: int = 8) -> None:
        self.engine = engine
        self.cipher = cipher
        self.max_attempts = max_attempts

    def _seal(self, key: str, payload: dict[str, Any]) -> bytes:
        return self.cipher.encrypt(msgspec.json.encode(payload).decode(), context=f"deliveries/{key}")

    def _row(self, row: Any, *, with_payload: bool = False) -> Delivery:
        m = row._mapping
        payload: dict[str, Any] = {}
        if with_payload:
            payload = msgspec.json.decode(
                self.cipher.decrypt(m["payload_ct"], context=f"deliveries/{m['key']}")
            )
        return Delivery(
            id=m["id"],
            key=m["key"],
            kind=m["kind"],
            channel=m["channel"],
            user_id=m["user_id"],
            template=m["template"],
            post_id=m["post_id"],
            status=m["status"],
            attempts=m["attempts"],
            max_attempts=m["max_attempts"],
            next_attempt_at=m["next_attempt_at"],
            provider_id=m["provider_id"],
            error=m["error"],
            sent_at=m["sent_at"],
            created_at=m["created_at"],
            campaign_id=m["campaign_id"],
            payload=payload,
        )

    def values(self, d: NewDelivery, at: datetime) -> dict[str, Any]:
        """The row for `d`, payload sealed (for callers inserting in their own transaction)."""
        return {
            "key": d.key,
            "kind": d.kind,
            "channel": d.channel,
            "user_id": d.user_id,
            "template": d.template,
            "post_id": d.post_id,
            "campaign_id": d.campaign_id,
            "status": "pending",
            "attempts": 0,
            "max_attempts": self.max_attempts,
            "next_attempt_at": d.not_before or at,
            "payload_ct": self._seal(d.key, d.payload),
            "created_at": at,
            "updated_at": at,
        }

    async def add(self, d: NewDelivery) -> tuple[Delivery, bool]:
        """(the row, whether it is new); the same key again gives the stored row back."""
        at = now()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(deliveries).values(**self.values(d, at)))
            created = True
        except IntegrityError:
            created = False
        found = await self.by_key(d.key)
        assert found is not None
        return found, created

    async def add_many(self, batch: Iterable[NewDelivery]) -> int:
        """Insert many rows in one transaction (all or nothing); keys must be new."""
        at = now()
        rows = [self.values(d, at) for d in batch]
        if not rows:
            return 0
        async with self.engine.begin() as conn:
            await conn.execute(insert(deliveries), rows)
        return len(rows)

    async def by_key(self, key: str) -> Delivery | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(deliveries).where(deliveries.c.key == key))).first()
        return self._row(row) if row else None

    async def get(self, delivery_id: int) -> Delivery | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).first()
        return self._row(row) if row else None

    async def for_post(self, post_id: int) -> list[Delivery]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries).where(deliveries.c.post_id == post_id).order_by(deliveries.c.id)
            )
            return [self._row(r) for r in rows]

    async def claim(
        self, worker: str, limit: int, claim_seconds: float, *, ids: list[int] | None = None
    ) -> list[Delivery]:
        """Claim up to `limit` due pending rows (or just `ids`, when due) for `worker`."""
        at = now()
        due = select(deliveries.c.id).where(
            deliveries.c.status == "pending", deliveries.c.next_attempt_at <= at
        )
        if ids is not None:
            due = due.where(deliveries.c.id.in_(ids))
        due = due.order_by(deliveries.c.next_attempt_at, deliveries.c.id).limit(limit)
        due = due.with_for_update(skip_locked=True)
        claimed = {
            "status": "sending",
            "attempts": deliveries.c.attempts + 1,
            "claimed_by": worker,
            "claimed_until": at + timedelta(seconds=claim_seconds),
            "updated_at": at,
        }
        if self.engine.dialect.name == "postgresql":
            # One statement, one round trip, no BEGIN/COMMIT: the chosen rows are a MATERIALIZED
            # CTE, computed once (as a subquery in WHERE … IN, PostgreSQL may run it more than
            # once and claim more than `limit` rows).
            chosen = due.cte("due").prefix_with("MATERIALIZED")
            statement = (
                update(deliveries)
                .where(deliveries.c.id == chosen.c.id)
                .values(**claimed)
                .returning(*deliveries.c)
            )
            async with self.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                rows = (await autocommit.execute(statement)).all()
        else:
            async with self.engine.begin() as conn:  # one writer at a time: select, then update
                found = list((await conn.execute(due)).scalars())
                if not found:
                    return []
                statement = (
                    update(deliveries)
                    .where(deliveries.c.id.in_(found), deliveries.c.status == "pending")
                    .values(**claimed)
                    .returning(*deliveries.c)
                )
                rows = (await conn.execute(statement)).all()
        return sorted((self._row(r, with_payload=True) for r in rows), key=lambda d: d.id)

    async def record(
        self,
        d: Delivery,
        status: str,
        *,
        error: str | None = None,
        provider_id: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Store one attempt's result; False when the row was no longer this claim's (recovered)."""
        return await self.record_many([Attempt(d, status, error, provider_id, retry_at)]) == 1

    async def record_many(self, results: Iterable[Attempt]) -> int:
        """`record` for many attempts in one transaction; how many rows were still these claims'."""
        at = now()
        rows = [
            {
                "d_id": r.delivery.id,
                "d_attempts": r.delivery.attempts,
                "v_status": r.status,
                "v_error": None if r.error is None else r.error[:2000],
                "v_provider_id": None if r.provider_id is None else r.provider_id[:256],
                "v_retry_at": r.retry_at,
                "v_sent_at": at if r.status == "sent" else None,
            }
            for r in results
        ]
        if not rows:
            return 0
        c = deliveries.c
        statement = (
            update(deliveries)
            .where(c.id == bindparam("d_id"), c.status == "sending", c.attempts == bindparam("d_attempts"))
            .values(
                status=bindparam("v_status"),
                error=bindparam("v_error"),
                provider_id=func.coalesce(bindparam("v_provider_id"), c.provider_id),
                next_attempt_at=func.coalesce(
                    bindparam("v_retry_at", type_=UtcDateTime()), c.next_attempt_at
                ),
                sent_at=func.coalesce(bindparam("v_sent_at", type_=UtcDateTime()), c.sent_at),
                claimed_by=None,
                claimed_until=None,
                updated_at=at,
            )
        )
        async with self.engine.begin() as conn:
            if len(rows) == 1:
                result = await conn.execute(statement, rows[0])
                return int(result.rowcount)
            result = await conn.execute(statement, rows)
        return len(rows) if result.rowcount is None or result.rowcount < 0 else int(result.rowcount)

    async def recover(self, resend_safe: set[str]) -> dict[str, int]:
        """Expired claims: `unknown`, or pending again on channels where a resend is harmless."""
        at = now()
        expired = and_(deliveries.c.status == "sending", deliveries.c.claimed_until < at)
        counts = {}
        async with self.engine.begin() as conn:
            again = await conn.execute(
                update(deliveries)
                .where(expired, deliveries.c.channel.in_(sorted(resend_safe)))
                .values(
                    status="pending", claimed_by=None, claimed_until=None, next_attempt_at=at, updated_at=at
                )
            )
            lost = await conn.execute(
                update(deliveries)
                .where(expired)
                .values(
                    status="unknown",
                    claimed_by=None,
                    claimed_until=None,
                    error=LOST_IN_FLIGHT,
                    updated_at=at,
                )
            )
            counts = {"requeued": again.rowcount, "unknown": lost.rowcount}
        return counts

    async def cancel_pending(self, post_id: int) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(deliveries)
                .where(deliveries.c.post_id == post_id, deliveries.c.status == "pending")
                .values(status="cancelled", updated_at=now())
            )
        return int(result.rowcount)

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status))
            return {status: int(n) for status, n in rows}
