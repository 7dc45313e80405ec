"""Item (catalog) records. Fields left out of a record keep their stored value; null clears."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from service.errors import FieldProblem
from service.records.common import Id, NonNegative, ShortText, Text, Url, check_id

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=1_000, pattern=r"^[^\x00]*\S[^\x00]*$")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Stock = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
Tags = Annotated[list[ShortText], msgspec.Meta(max_length=100)]
Availability = bool | dict[Id, bool]


class ItemFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """The updatable fields of an item; `available` is a bool or `{channel: bool}`."""

    description: Text | UnsetType | None = UNSET
    category: ShortText | UnsetType | None = UNSET
    tags: Tags | UnsetType | None = UNSET
    price: NonNegative | UnsetType | None = UNSET
    currency: Currency | UnsetType | None = UNSET
    url: Url | UnsetType | None = UNSET
    image_url: Url | UnsetType | None = UNSET
    available: Availability | UnsetType = UNSET
    stock: Stock | UnsetType | None = UNSET


class ItemPatch(ItemFields, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    title: Title | UnsetType = UNSET


class ItemIn(ItemFields, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    item_id: Id
    title: Title


class ItemOut(msgspec.Struct, kw_only=True):
    item_id: str
    title: str
    description: str | None
    category: str | None
    tags: list[str]
    price: float | None
    currency: str | None
    url: str | None
    image_url: str | None
    available: bool
    channel_availability: dict[str, bool]
    stock: int | None


_PLAIN_FIELDS = (
    "title",
    "description",
    "category",
    "price",
    "currency",
    "url",
    "image_url",
    "stock",
)


def item_columns(record: ItemFields, *, channels: tuple[str, ...]) -> dict[str, Any]:
    """The item-table columns a record sets (only those given); raises FieldProblem."""
    if isinstance(record, ItemIn):
        check_id("item_id", record.item_id)
    columns: dict[str, Any] = {}
    for name in _PLAIN_FIELDS:
        value = getattr(record, name, UNSET)
        if value is not UNSET:
            columns[name] = value
    if record.tags is not UNSET:
        columns["tags"] = list(dict.fromkeys(record.tags or ()))
    if isinstance(record.available, bool):
        columns["available"] = record.available
    elif isinstance(record.available, dict):
        unknown = [c for c in record.available if c not in channels]
        if unknown:
            raise FieldProblem(
                f"available.{unknown[0]}",
                f"unknown channel {unknown[0]!r}; known: {', '.join(channels)}",
            )
        columns["channel_availability"] = dict(record.available)
    return columns


def item_out(row: Any) -> ItemOut:
    m = row._mapping
    return ItemOut(
        item_id=m["item_id"],
        title=m["title"],
        description=m["description"],
        category=m["category"],
        tags=list(m["tags"] or []),
        price=m["price"],
        currency=m["currency"],
        url=m["url"],
        image_url=m["image_url"],
        available=m["available"],
        channel_availability=dict(m["channel_availability"] or {}),
        stock=m["stock"],
    )
