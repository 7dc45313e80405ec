"""The three kinds of record an ingest handles, each knowing how to validate and write a batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from service.records import (
    EventIn,
    ItemIn,
    UserIn,
    consent_rows,
    event_row,
    item_columns,
    user_columns,
)
from service.security.crypto import PersonalDataCipher
from service.storage.writes import (
    insert_events,
    upsert_consents,
    upsert_items,
    upsert_users,
)


@dataclass
class WriteCounts:
    accepted: int = 0
    duplicates: int = 0
    unknown_items: int = 0


class RecordKind(Protocol):
    """Validates decoded records into rows, and writes a batch of rows on a connection."""

    name: str
    record_type: type[Any]

    def prepare(self, record: Any) -> Any:
        """A row ready to write; raises FieldProblem naming the field."""
        ...

    async def write(self, conn: AsyncConnection, rows: list[Any]) -> WriteCounts: ...


@dataclass
class EventKind:
    """Events: duplicates of a stored `event_id` are skipped; unknown items are kept, and counted."""

    channels: tuple[str, ...]
    name: str = "events"
    record_type: type[Any] = EventIn
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def prepare(self, record: EventIn) -> dict[str, Any]:
        return event_row(record, channels=self.channels, now=self.now)

    async def write(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> WriteCounts:
        inserted, unknown = await insert_events(conn, rows)
        return WriteCounts(accepted=inserted, duplicates=len(rows) - inserted, unknown_items=unknown)


@dataclass
class ItemKind:
    """Items: upserted; records for the same item in one batch are merged, later fields winning."""

    channels: tuple[str, ...]
    name: str = "items"
    record_type: type[Any] = ItemIn

    def prepare(self, record: ItemIn) -> tuple[str, dict[str, Any]]:
        return record.item_id, item_columns(record, channels=self.channels)

    async def write(self, conn: AsyncConnection, rows: list[tuple[str, dict[str, Any]]]) -> WriteCounts:
        by_id: dict[str, dict[str, Any]] = {}
        for item_id, columns in rows:
            by_id.setdefault(item_id, {}).update(columns)
        await upsert_items(conn, by_id)
        return WriteCounts(accepted=len(rows))


@dataclass
class UserKind:
    """Users: contact points encrypted, consents upserted per channel; later records win."""

    cipher: PersonalDataCipher
    name: str = "users"
    record_type: type[Any] = UserIn

    def prepare(self, record: UserIn) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        return record.user_id, user_columns(record, self.cipher), consent_rows(record)

    async def write(
        self, conn: AsyncConnection, rows: list[tuple[str, dict[str, Any], list[dict[str, Any]]]]
    ) -> WriteCounts:
        by_id: dict[str, dict[str, Any]] = {}
        consents: dict[tuple[str, str], dict[str, Any]] = {}
        for user_id, columns, consent_list in rows:
            by_id.setdefault(user_id, {}).update(columns)
            for consent in consent_list:
                consents[(user_id, consent["channel"])] = consent
        await upsert_users(conn, by_id)
        await upsert_consents(conn, list(consents.values()))
        return WriteCounts(accepted=len(rows))
