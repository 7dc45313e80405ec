"""Staff accounts, sign-in and sessions for the console.

Passwords are argon2id hashes (argon2-cffi's defaults). A wrong email and a wrong password get
the same answer after the same work (an unknown email is checked against a dummy hash). Every
failure counts against that email, known or not; from the fourth on, the email is locked for
1, 2, 4 … seconds (at most five minutes), whatever password comes next. A success clears it.

A session is a random token in an HttpOnly cookie; the store keeps its SHA-256, a CSRF token
for the session's forms, and two clocks: idle (`IDLE`) and absolute (`LIFETIME`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import Conflict
from service.storage.tables import staff_login_failures, staff_sessions, staff_users

ROLES = ("viewer", "marketer", "admin")
IDLE = timedelta(hours=2)
LIFETIME = timedelta(hours=12)
FREE_FAILURES = 3
MAX_LOCK_SECONDS = 300
MIN_PASSWORD = 10

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has: equalizes the work for unknown emails")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalized(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class Staff:
    id: int
    email: str
    name: str | None
    role: str

    def may(self, role: str) -> bool:
        """True when this member's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Session:
    staff: Staff
    csrf_token: str


class Locked(Exception):
    def __init__(self, seconds: int) -> None:
        super().__init__(f"locked for {seconds} s")
        self.seconds = seconds


class StaffStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, email: str, password: str, role: str, name: str | None = None) -> Staff:
        """A new staff member; raises ValueError for a bad role or a short password, Conflict if taken."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
        email = normalized(email)
        if "@" not in email or len(email) > 254:
            raise ValueError("an email address is needed")
        row = {"email": email, "name": name, "password_hash": _hasher.hash(password), "role": role}
        try:
            async with self.engine.begin() as conn:
                new_id = (await conn.execute(insert(staff_users).values(**row))).inserted_primary_key
        except IntegrityError:
            raise Conflict(f"a staff member with the email {email} exists") from None
        assert new_id is not None
        return Staff(int(new_id[0]), email, name, role)

    async def set_password(self, email: str, password: str) -> bool:
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(staff_users)
                .where(staff_users.c.email == normalized(email))
                .values(password_hash=_hasher.hash(password))
            )
        return bool(done.rowcount)

    async def all(self) -> list[Staff]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(staff_users).where(staff_users.c.disabled_at.is_(None)).order_by(staff_users.c.email)
            )
            return [Staff(r.id, r.email, r.name, r.role) for r in rows]

    async def sign_in(self, email: str, password: str, now: datetime | None = None) -> Staff | None:
        """The staff member, or None for a wrong email or password; raises Locked while locked out."""
        now = now or datetime.now(UTC)
        email = normalized(email)
        key = _digest(email)
        async with self.engine.connect() as conn:
            failure = (
                await conn.execute(
                    select(staff_login_failures).where(staff_login_failures.c.email_hash == key)
                )
            ).first()
            row = (
                await conn.execute(
                    select(staff_users).where(
                        staff_users.c.email == email, staff_users.c.disabled_at.is_(None)
                    )
                )
            ).first()
        if failure is not None and failure.locked_until is not None and failure.locked_until > now:
            raise Locked(max(1, int((failure.locked_until - now).total_seconds() + 0.999)))
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
            ok = row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None:
            await self._failed(key, (failure.failures if failure else 0) + 1, now)
            return None
        async with self.engine.begin() as conn:
            await conn.execute(delete(staff_login_failures).where(staff_login_failures.c.email_hash == key))
            if _hasher.check_needs_rehash(row.password_hash):
                await conn.execute(
                    update(staff_users)
                    .where(staff_users.c.id == row.id)
                    .values(password_hash=_hasher.hash(password))
                )
        return Staff(row.id, row.email, row.name, row.role)

    async def _failed(self, key: str, failures: int, now: datetime) -> None:
        lock = None
        if failures > FREE_FAILURES:
            lock = now + timedelta(seconds=min(2 ** (failures - FREE_FAILURES - 1), MAX_LOCK_SECONDS))
        values = {"failures": failures, "locked_until": lock, "last_failed_at": now}
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(staff_login_failures).where(staff_login_failures.c.email_hash == key).values(**values)
            )
            if not changed.rowcount:
                await conn.execute(insert(staff_login_failures).values(email_hash=key, **values))

    # -- sessions --------------------------------------------------------------------------------

    async def open_session(self, staff: Staff, now: datetime | None = None) -> tuple[str, Session]:
        """A new session: (cookie token, session)."""
        now = now or datetime.now(UTC)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(delete(staff_sessions).where(staff_sessions.c.expires_at < now))
            await conn.execute(
                insert(staff_sessions).values(
                    token_hash=_digest(token),
                    staff_id=staff.id,
                    csrf_token=csrf,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + LIFETIME,
                )
            )
        return token, Session(staff, csrf)

    async def session(self, token: str, now: datetime | None = None) -> Session | None:
        """The live session for a cookie token, or None (unknown, idle too long, past its lifetime)."""
        now = now or datetime.now(UTC)
        s, u = staff_sessions.c, staff_users.c
        query = (
            select(s.csrf_token, s.last_seen_at, s.expires_at, u.id, u.email, u.name, u.role)
            .join(staff_users, u.id == s.staff_id)
            .where(s.token_hash == _digest(token), u.disabled_at.is_(None))
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.expires_at <= now or row.last_seen_at + IDLE <= now:
            return None
        if now - row.last_seen_at > timedelta(minutes=1):  # one write a minute at most
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(staff_sessions).where(s.token_hash == _digest(token)).values(last_seen_at=now)
                )
        return Session(Staff(row.id, row.email, row.name, row.role), row.csrf_token)

    async def close_session(self, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(staff_sessions).where(staff_sessions.c.token_hash == _digest(token)))
