"""User records: contact points (encrypted before storage), consents, locale and time zone.

Fields left out of a record keep their stored value; null clears. Consents are per channel,
each with the time and source of the latest change.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from service.errors import FieldProblem
from service.records.common import Id, ShortText, Timestamp, check_id, parse_timestamp
from service.security.crypto import PersonalDataCipher

ConsentChannel = Literal["email", "push", "sms", "social"]
CONSENT_CHANNELS: tuple[str, ...] = get_args(ConsentChannel)

Email = Annotated[
    str,
    msgspec.Meta(
        max_length=320,
        pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$",
        description="email",
    ),
]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9][0-9 ()./-]{3,30}$", description="phone")]
PushToken = Annotated[str, msgspec.Meta(min_length=1, max_length=4_096, pattern=r"^[^\x00-\x1f\x7f]+$")]
Locale = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$")]
TimeZone = Annotated[str, msgspec.Meta(max_length=64, description="IANA name, e.g. Europe/Paris")]
AttributeValue = ShortText | int | float | bool | None
Attributes = Annotated[dict[ShortText, AttributeValue], msgspec.Meta(max_length=200)]


class ConsentIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    granted: bool
    source: ShortText | None = None
    at: Timestamp | None = None


class UserIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    user_id: Id
    email: Email | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    push_tokens: Annotated[list[PushToken], msgspec.Meta(max_length=50)] | UnsetType | None = UNSET
    locale: Locale | UnsetType | None = UNSET
    timezone: TimeZone | UnsetType | None = UNSET
    consents: dict[ConsentChannel, bool | ConsentIn] | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET


class ConsentOut(msgspec.Struct):
    granted: bool
    updated_at: datetime
    source: str | None


class UserOut(msgspec.Struct, kw_only=True):
    user_id: str
    email: str | None
    phone: str | None
    push_tokens: list[str]
    locale: str | None
    timezone: str | None
    consents: dict[str, ConsentOut]
    attributes: dict[str, AttributeValue]
    created_at: datetime
    updated_at: datetime


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def user_columns(record: UserIn, cipher: PersonalDataCipher) -> dict[str, Any]:
    """The users-table columns a record sets, with contact points encrypted."""
    check_id("user_id", record.user_id)
    columns: dict[str, Any] = {}
    uid = record.user_id
    for kind, value in (("email", record.email), ("phone", record.phone)):
        if value is UNSET:
            continue
        columns[f"{kind}_ct"] = cipher.encrypt(value, context=f"users/{uid}/{kind}") if value else None
        columns[f"{kind}_bidx"] = cipher.blind_index(kind, value) if value else None
    if record.push_tokens is not UNSET:
        tokens = list(dict.fromkeys(record.push_tokens or ()))
        columns["push_tokens_ct"] = (
            cipher.encrypt(msgspec.json.encode(tokens).decode(), context=f"users/{uid}/push_tokens")
            if tokens
            else None
        )
    if record.locale is not UNSET:
        columns["locale"] = record.locale.replace("_", "-") if record.locale else None
    if record.timezone is not UNSET:
        if record.timezone is not None and record.timezone not in _zones():
            raise FieldProblem("timezone", f"unknown IANA time zone {record.timezone!r}")
        columns["timezone"] = record.timezone
    if record.attributes is not UNSET:
        columns["attributes"] = dict(record.attributes)
    return columns


def consent_rows(record: UserIn, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """One user_consents row per channel the record mentions."""
    if record.consents is UNSET:
        return []
    moment_now = now or datetime.now(UTC)
    rows = []
    for channel, consent in record.consents.items():
        if isinstance(consent, bool):
            granted, source, at = consent, None, moment_now
        else:
            granted, source = consent.granted, consent.source
            try:
                at = parse_timestamp(consent.at, now=moment_now) if consent.at else moment_now
            except ValueError as exc:
                raise FieldProblem(f"consents.{channel}.at", str(exc)) from None
        rows.append(
            {
                "user_id": record.user_id,
                "channel": channel,
                "granted": granted,
                "source": source,
                "updated_at": at,
            }
        )
    return rows
