"""Record formats shared by the HTTP API and file imports: events, items, users."""

from service.records.events import EVENT_TYPES, EventIn, event_row
from service.records.items import ItemIn, ItemOut, ItemPatch, item_columns
from service.records.users import CONSENT_CHANNELS, UserIn, UserOut, consent_rows, user_columns

__all__ = [
    "CONSENT_CHANNELS",
    "EVENT_TYPES",
    "EventIn",
    "ItemIn",
    "ItemOut",
    "ItemPatch",
    "UserIn",
    "UserOut",
    "consent_rows",
    "event_row",
    "item_columns",
    "user_columns",
]
