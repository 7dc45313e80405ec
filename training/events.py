"""The event log as columns: ids coded to integers, times as Unix seconds, types as small codes.

Loaded from files (CSV, NDJSON, Parquet, gzip too: shopcast's event record format) through
pyarrow, or from the store in chunks (`LogBuilder`); never as one Python object per event. Ids are kept once
per distinct user and item, so memory is bounded by the data, not by Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EVENT_TYPES = ("view", "click", "add_to_cart", "remove_from_cart", "wishlist", "purchase", "refund", "rate")
EVENT_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}


class EventDataError(ValueError):
    """The events cannot be used: unreadable, missing a column, or with unusable values."""


@dataclass(frozen=True)
class EventLog:
    """Aligned columns, one entry per event, sorted by time."""

    users: np.ndarray  # int32 codes into user_ids
    items: np.ndarray  # int32 codes into item_ids
    types: np.ndarray  # int8 codes into EVENT_TYPES
    timestamps: np.ndarray  # float64 Unix seconds
    sessions: np.ndarray  # int64 codes, -1 when unknown
    user_ids: np.ndarray  # str, the id of each user code
    item_ids: np.ndarray  # str

    def __len__(self) -> int:
        return len(self.users)

    def select(self, mask: np.ndarray) -> EventLog:
        """The events where `mask` holds (codes and id maps unchanged)."""
        return EventLog(
            self.users[mask],
            self.items[mask],
            self.types[mask],
            self.timestamps[mask],
            self.sessions[mask],
            self.user_ids,
            self.item_ids,
        )

    @property
    def window(self) -> tuple[float, float]:
        if not len(self):
            return (0.0, 0.0)
        return float(self.timestamps.min()), float(self.timestamps.max())


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    encoded = pc.dictionary_encode(pc.cast(column, pa.string()))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, np.asarray(encoded.dictionary.to_pylist(), dtype=str)


def _epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    """ISO 8601 (UTC when no offset) or Unix seconds, to float64 seconds."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return np.asarray(column.to_numpy(), dtype=np.float64)
    if pa.types.is_timestamp(column.type):
        stamps = column if column.type.tz else pc.assume_timezone(column, "UTC")
        return _micros_to_seconds(pc.cast(stamps, pa.timestamp("us", "UTC")))
    text = pc.cast(column, pa.string())
    try:
        return np.asarray(pc.cast(text, pa.float64()).to_numpy(), dtype=np.float64)
    except pa.ArrowInvalid:
        pass
    try:
        return _micros_to_seconds(pc.cast(text, pa.timestamp("us", "UTC")))
    except pa.ArrowInvalid:
        pass
    values = []
    for index, value in enumerate(text.to_pylist()):
        try:
            values.append(_parse_one(value))
        except (TypeError, ValueError):
            raise EventDataError(
                f"event {index + 1}: timestamp {value!r} is not ISO 8601 or Unix seconds"
            ) from None
    return np.asarray(values, dtype=np.float64)


def _micros_to_seconds(stamps: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(stamps.cast(pa.int64()).to_numpy(), dtype=np.float64) / 1e6


def _parse_one(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def from_table(table: pa.Table) -> EventLog:
    """An event log from an Arrow table in shopcast's event record format."""
    missing = [c for c in ("user_id", "item_id", "event", "timestamp") if c not in table.column_names]
    if missing:
        raise EventDataError(f"events need the columns {', '.join(missing)}")
    table = table.filter(pc.and_(pc.is_valid(table["user_id"]), pc.is_valid(table["item_id"])))
    type_names = pc.cast(table["event"], pa.string()).to_numpy(zero_copy_only=False)
    unknown = sorted(set(np.unique(type_names.astype(str))) - set(EVENT_TYPES))
    if unknown:
        raise EventDataError(f"unknown event types {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    lookup = np.vectorize(EVENT_CODES.__getitem__, otypes=[np.int8])
    users, user_ids = _codes(table["user_id"])
    items, item_ids = _codes(table["item_id"])
    timestamps = _epoch_seconds(table["timestamp"])
    if not np.isfinite(timestamps).all():
        raise EventDataError("some timestamps are empty or not finite")
    if "session_id" in table.column_names:
        session_codes, _ = _codes(pc.fill_null(pc.cast(table["session_id"], pa.string()), ""))
        empty = np.asarray(pc.equal(pc.fill_null(pc.cast(table["session_id"], pa.string()), ""), "")).astype(
            bool
        )
        sessions = np.where(empty, -1, session_codes).astype(np.int64)
    else:
        sessions = np.full(len(users), -1, dtype=np.int64)
    types = lookup(type_names.astype(str)) if len(type_names) else np.zeros(0, dtype=np.int8)
    order = np.argsort(timestamps, kind="stable")
    return EventLog(
        users[order], items[order], types[order], timestamps[order], sessions[order], user_ids, item_ids
    )


def read_file(path: Path) -> EventLog:
    """Events from a `.csv`, `.ndjson`/`.jsonl` or `.parquet` file (optionally `.gz`)."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    name = path.name.lower().removesuffix(".gz")
    strings = {c: pa.string() for c in ("user_id", "item_id", "session_id", "event_id", "channel")}
    try:
        if name.endswith(".csv"):
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=strings))
        elif name.endswith((".ndjson", ".jsonl", ".json")):
            table = pjson.read_json(path)
        elif name.endswith(".parquet"):
            table = pq.read_table(path)
        else:
            raise EventDataError(f"cannot tell the format of {path}: use .csv, .ndjson/.jsonl or .parquet")
    except FileNotFoundError:
        raise EventDataError(f"no such file: {path}") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise EventDataError(f"cannot read {path}: {exc}") from None
    return from_table(table)


Row = tuple[str, str, str, float, str | None]  # user_id, item_id, event, unix_seconds, session_id


class LogBuilder:
    """Builds an event log from row chunks (the store), coding each chunk to integers as it comes.

    Only the coded arrays and one entry per distinct id are kept, never the rows themselves.
    """

    def __init__(self) -> None:
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self._sessions: dict[str, int] = {}
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, chunk: list[Row]) -> None:
        if not chunk:
            return
        users, items, sessions, size = self._users, self._items, self._sessions, len(chunk)
        self._parts.append(
            (
                np.fromiter((users.setdefault(r[0], len(users)) for r in chunk), np.int32, size),
                np.fromiter((items.setdefault(r[1], len(items)) for r in chunk), np.int32, size),
                np.fromiter((EVENT_CODES.get(r[2], -1) for r in chunk), np.int8, size),
                np.fromiter((float(r[3]) for r in chunk), np.float64, size),
                np.fromiter(
                    (sessions.setdefault(r[4], len(sessions)) if r[4] else -1 for r in chunk), np.int64, size
                ),
            )
        )

    def build(self) -> EventLog:
        user_ids = np.asarray(list(self._users), dtype=str)
        item_ids = np.asarray(list(self._items), dtype=str)
        if not self._parts:
            empty = np.zeros(0)
            return EventLog(
                empty.astype(np.int32),
                empty.astype(np.int32),
                empty.astype(np.int8),
                empty,
                empty.astype(np.int64),
                user_ids,
                item_ids,
            )
        users, items, types, stamps, sessions = (np.concatenate(c) for c in zip(*self._parts, strict=True))
        keep = types >= 0
        order = np.argsort(stamps[keep], kind="stable")
        return EventLog(
            users[keep][order],
            items[keep][order],
            types[keep][order],
            stamps[keep][order],
            sessions[keep][order],
            user_ids,
            item_ids,
        )
