"""The SQL schema: SQLAlchemy Core tables (the system of record).

Personal contact points live only as ciphertext (`*_ct`) plus a keyed hash (`*_bidx`) for
look-ups; see `service.security.crypto`. Every table holding a `user_id` column is erased
by `service.users.erasure`, found through this metadata, so a new table cannot escape it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
)
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


ID = String(128)
Money = Numeric(14, 4, asdecimal=False)
# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
        Column("updated_at", UtcDateTime(), nullable=False, server_default=func.now()),
    ]


items = Table(
    "items",
    metadata,
    Column("item_id", ID, primary_key=True),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("category", String(256)),
    Column("tags", JSON, nullable=False, default=list),
    Column("price", Money),
    Column("currency", String(3)),
    Column("url", Text),
    Column("image_url", Text),
    Column("available", Boolean, nullable=False, default=True),
    Column("channel_availability", JSON, nullable=False, default=dict),
    Column("stock", Integer),
    *_timestamps(),
    Index(None, "category"),
)

users = Table(
    "users",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("email_ct", LargeBinary),
    Column("email_bidx", String(64), index=True),
    Column("phone_ct", LargeBinary),
    Column("phone_bidx", String(64), index=True),
    Column("push_tokens_ct", LargeBinary),
    Column("locale", String(35)),
    Column("timezone", String(64)),
    Column("attributes", JSON, nullable=False, default=dict),
    *_timestamps(),
)

user_consents = Table(
    "user_consents",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("granted", Boolean, nullable=False),
    Column("source", String(64)),
    Column("updated_at", UtcDateTime(), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", ID, unique=True),
    Column("user_id", ID, nullable=False),
    Column("item_id", ID, nullable=False),
    Column("event", String(32), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("channel", String(32)),
    Column("quantity", Float),
    Column("price", Money),
    Column("session_id", ID),
    Column("recommendation_id", ID),  # the answer a storefront click came from (online CTR)
    Column("received_at", UtcDateTime(), nullable=False, server_default=func.now()),
    Index(None, "user_id", "occurred_at"),
    Index(None, "item_id"),
    Index(None, "occurred_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(512), nullable=False),
    Column("rate_limit_per_minute", Integer),
    Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
    Column("last_used_at", UtcDateTime()),
    Column("revoked_at", UtcDateTime()),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("activated_at", UtcDateTime()),
    Column("forced", Boolean, nullable=False, default=False),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("summary", JSON, nullable=False, default=dict),
)

scheduled_runs = Table(
    "scheduled_runs",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("slot", UtcDateTime(), primary_key=True),
    Column("worker", String(128), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("outcome", Text),
)

# Staff rules for recommendations: `pin` puts an item first, `block` keeps it out. Channel ""
# means every channel.
merch_rules = Table(
    "merch_rules",
    metadata,
    Column("item_id", ID, primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("action", String(8), nullable=False),
    Column("position", Integer, nullable=False, default=0),
    Column("note", Text),
    *_timestamps(),
)

# Staff-written message templates, versioned: each save adds a version; the newest one is used.
# Locale "" is the default variant. `parts` maps part names (subject, html, text, title, body…)
# to Jinja2 sources.
message_templates = Table(
    "message_templates",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("locale", String(35), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("parts", JSON, nullable=False),
    Column("note", Text),
    Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
)

# Every outgoing message is a row here before it is attempted (the durable outbox). `key` makes
# a message unique (a client's Idempotency-Key, or campaign/user/channel); `payload_ct` is the
# rendered message, encrypted like other personal data (it holds the address), bound to `key`.
# status: pending -> sending -> sent | failed | unknown (may have gone out; never resent
# blindly) | cancelled; `sending` rows whose claim expired were in flight when a worker died.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("user_id", ID),
    Column("template", String(128)),
    Column("post_id", BigId),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=8),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_until", UtcDateTime()),
    Column("payload_ct", LargeBinary, nullable=False),
    Column("provider_id", String(256)),
    Column("error", Text),
    Column("sent_at", UtcDateTime()),
    Column("campaign_id", BigId),
    *_timestamps(),
    Index(None, "status", "next_attempt_at"),
    Index(None, "user_id"),
    Index(None, "post_id"),
    Index(None, "campaign_id", "status"),
)

# Posts to social channels: one row per post, one delivery per channel it goes to.
social_posts = Table(
    "social_posts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(200), unique=True),
    Column("scheduled_at", UtcDateTime(), nullable=False),
    Column("channels", JSON, nullable=False),
    Column("items", JSON, nullable=False, default=list),
    Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
)


# Saved audience rules (see service.campaigns.audiences for the rule language).
audiences = Table(
    "audiences",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("rules", JSON, nullable=False),
    Column("description", Text),
    *_timestamps(),
)

# A campaign and its lifecycle: draft -> scheduled -> running -> paused -> completed | cancelled.
# `run` counts the runs of a recurring campaign; planning a run walks the audience in user_id
# order and records how far it got in `plan_cursor`, so a planner that dies resumes exactly.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("settings", JSON, nullable=False),  # channels, templates, variants, rules, window…
    Column("audience_id", BigId),
    Column("scheduled_at", UtcDateTime()),
    Column("cron", String(128)),
    Column("next_run_at", UtcDateTime()),
    Column("run", Integer, nullable=False, default=0),
    Column("run_started_at", UtcDateTime()),
    Column("plan_cursor", String(128)),
    Column("planned", Boolean, nullable=False, default=False),
    Column("status_reason", Text),
    Column("trigger_state", JSON),  # a flow's watermark and what it saw last (back in stock)
    Column("final_results", JSON),  # its analytics row, once ended and past its attribution window
    Column("completed_at", UtcDateTime()),
    *_timestamps(),
    Index(None, "status"),
)

# Who a campaign run considered and what became of them: treated (a delivery was planned),
# holdout (kept out on purpose, for the lift), or skipped with a reason (no consent, capped…).
campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("campaign_id", BigId, primary_key=True),
    Column("run", Integer, primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("variant", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(32)),
    Column("planned_at", UtcDateTime(), nullable=False),
    Index(None, "user_id"),
)

# Opens, clicks and unsubscribes that came through a message's signed links.
message_events = Table(
    "message_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_key", String(200), nullable=False),
    Column("campaign_id", BigId),
    Column("user_id", ID),
    Column("kind", String(16), nullable=False),
    Column("item_id", ID),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Index(None, "campaign_id", "kind"),
    Index(None, "user_id"),
)

# Addresses never to be mailed again (hard bounces, complaints, staff), by blind index only.
suppressions = Table(
    "suppressions",
    metadata,
    Column("email_bidx", String(64), primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
)


def _item_measures() -> list[Column[object]]:
    counts = [
        Column(name, Integer, nullable=False, default=0) for name in ("views", "clicks", "carts", "purchases")
    ]
    return [
        *counts,
        Column("units", Float, nullable=False, default=0),
        Column("revenue", Float, nullable=False, default=0),
    ]


# Daily roll-ups, kept in step with every event insert in the same statement or transaction
# (service.analytics.rollups), so analytics read days, not events. Days are UTC; channel "" is
# an event sent without one.
item_daily = Table(
    "item_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("item_id", ID, primary_key=True),
    Column("channel", String(32), primary_key=True),
    *_item_measures(),
    Index(None, "item_id", "day"),  # one item's days: the "change against the period before"
)

# The same per ISO week (`week` is its Monday): a long period reads whole weeks from here and
# only its ragged ends from item_daily, a few times fewer rows.
item_weekly = Table(
    "item_weekly",
    metadata,
    Column("week", Date, primary_key=True),
    Column("item_id", ID, primary_key=True),
    Column("channel", String(32), primary_key=True),
    *_item_measures(),
)

# Totals per channel and day: revenue share, orders, events.
channel_daily = Table(
    "channel_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("events", Integer, nullable=False, default=0),
    Column("purchases", Integer, nullable=False, default=0),
    Column("revenue", Float, nullable=False, default=0),
)

# Each user's last active and last purchase day per channel: distinct active users and buyers
# of any period that ends today, without counting distinct users over days.
user_channel_latest = Table(
    "user_channel_latest",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("last_seen_day", Date, nullable=False),
    Column("last_purchase_day", Date),
)

# Who was active where, per day: exact distinct users and buyers of any period.
user_channel_daily = Table(
    "user_channel_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("events", Integer, nullable=False, default=0),
    Column("purchases", Integer, nullable=False, default=0),
    Column("revenue", Float, nullable=False, default=0),
)

# Recommendations served per model version and day (flushed by each serving process), and the
# storefront clicks reported with their recommendation id.
recommendation_daily = Table(
    "recommendation_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("model_version", String(64), primary_key=True),
    Column("served", BigInteger, nullable=False, default=0),
    Column("clicked", BigInteger, nullable=False, default=0),
)

# Staff who sign in to the console (/console): argon2 password hashes, a role each.
# role: viewer (reads) < marketer (campaigns, templates, audiences) < admin (models, keys, staff)
staff_users = Table(
    "staff_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(128)),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
    Column("disabled_at", UtcDateTime()),
)

# Console sessions: the cookie carries a random token, the store only its SHA-256.
staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("staff_id", Integer, nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

# Failed sign-ins per email (a hash of it, known account or not): each failure past the third
# locks that email out for longer, so guessing slows to a crawl.
staff_login_failures = Table(
    "staff_login_failures",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until", UtcDateTime()),
    Column("last_failed_at", UtcDateTime(), nullable=False),
)
