"""API keys: created once and shown once, stored only as a SHA-256 hash, with scopes.

Keys are 256-bit random tokens, so a fast hash is as safe as a slow one here. Verified keys
are cached in process for `key_cache_seconds`; revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from service.security.scopes import parse_scopes
from service.storage.tables import api_keys

KEY_PREFIX = "sck_"
_LAST_USED_RESOLUTION_SECONDS = 60.0


class ApiKey(msgspec.Struct, frozen=True):
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    rate_limit_per_minute: int | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _row_to_key(row: object) -> ApiKey:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiKey(
        id=m["id"],
        name=m["name"],
        prefix=m["prefix"],
        scopes=tuple(m["scopes"].split(",")),
        created_at=m["created_at"],
        rate_limit_per_minute=m["rate_limit_per_minute"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
    )


class KeyStore:
    """Creates, lists, revokes and verifies API keys."""

    def __init__(self, engine: AsyncEngine, cache_seconds: float = 5.0) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self._reading: set[str] = set()  # digests being read again now
        self._last_used_written: dict[int, float] = {}

    async def create(
        self, name: str, scopes: str | list[str], rate_limit_per_minute: int | None = None
    ) -> NewKey:
        if not name.strip():
            raise ValueError("a key needs a name")
        parsed = parse_scopes(scopes)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                api_keys.insert()
                .values(
                    name=name.strip(),
                    prefix=secret[:12],
                    key_hash=hash_key(secret),
                    scopes=",".join(parsed),
                    rate_limit_per_minute=rate_limit_per_minute,
                    created_at=datetime.now(UTC),
                )
                .returning(*api_keys.c)
            )
            key = _row_to_key(result.one())
        return NewKey(key=key, secret=secret)

    async def list(self) -> list[ApiKey]:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(api_keys).order_by(api_keys.c.id))
            return [_row_to_key(row) for row in result]

    async def revoke(self, key_id: int) -> bool:
        """Revoke a key by id; False when no active key has that id."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        self._cache.clear()
        return bool(result.rowcount)

    async def verify(self, secret: str) -> ApiKey | None:
        """The active key for `secret`, or None when it is unknown or revoked.

        When a cached key expires, one request reads it again while the others go on with the
        cached one, so a busy key never sends all its concurrent requests to the database.
        """
        digest = hash_key(secret)
        cached = self._cache.get(digest)
        if cached is not None and (cached[1] > time.monotonic() or digest in self._reading):
            return cached[0]
        self._reading.add(digest)
        try:
            key = await self._read(digest)
        finally:
            self._reading.discard(digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (key, time.monotonic() + self._cache_seconds)
        return key

    async def _read(self, digest: str) -> ApiKey | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == digest))).one_or_none()
        key = _row_to_key(row) if row is not None else None
        return None if key is None or key.revoked_at is not None else key

    async def touch(self, key: ApiKey) -> None:
        """Record use, at most once a minute per key and process."""
        now = time.monotonic()
        if now - self._last_used_written.get(key.id, -1e9) < _LAST_USED_RESOLUTION_SECONDS:
            return
        self._last_used_written[key.id] = now
        async with self._engine.begin() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.id == key.id).values(last_used_at=datetime.now(UTC))
            )
