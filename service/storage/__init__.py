"""Storage: SQL tables, the engine, migrations and the named queries the services share."""

from service.storage.engine import create_engine
from service.storage.migrate import upgrade
from service.storage.tables import api_keys, events, items, metadata, user_consents, users

__all__ = [
    "api_keys",
    "create_engine",
    "events",
    "items",
    "metadata",
    "upgrade",
    "user_consents",
    "users",
]
