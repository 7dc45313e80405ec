"""Settings read from the environment (and a `.env` file), one dataclass per concern.

Every variable is `SHOPCAST_*`; the defaults run on one machine with no other services
(SQLite, in-process stores, emails written to files). See README's "Settings" table.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

DEFAULT_CHANNELS = ("web", "app", "store", "social")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    pool_size: int = 10
    echo: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


@dataclass(frozen=True)
class RedisSettings:
    url: str | None = None
    timeout_seconds: float = 0.25
    retry_after_failure_seconds: float = 5.0


@dataclass(frozen=True)
class ApiSettings:
    max_body_bytes: int = 10_000_000
    max_batch_records: int = 10_000
    max_line_bytes: int = 65_536
    bulk_batch_rows: int = 5_000
    rate_limit_per_minute: int = 6_000
    key_cache_seconds: float = 5.0
    channels: tuple[str, ...] = DEFAULT_CHANNELS


@dataclass(frozen=True)
class JobSettings:
    """What `shopcast worker` runs on a schedule (cron expressions, UTC; empty: never)."""

    retrain_cron: str = "0 3 * * *"
    retrain_tune_seconds: float = 0.0


@dataclass(frozen=True)
class CampaignSettings:
    """How campaigns are planned and held back (see README, "Campaigns")."""

    frequency_cap: int = 5  # marketing messages per user per `frequency_days`, across campaigns (0: none)
    frequency_days: float = 7.0
    plan_chunk: int = 1_000  # recipients planned per transaction
    tick_seconds: float = 1.0  # how often workers look for campaigns to start, plan or finish
    error_budget_min: int = 20  # failures before a campaign's error budget is judged


def _cap(text: str | None) -> tuple[int, float]:
    """`5/7d` -> (5, 7.0); `0` -> no cap."""
    text = (text or "5/7d").strip()
    if text in ("0", "none", "off"):
        return 0, 7.0
    count, _, period = text.partition("/")
    days = float(period.removesuffix("d") or 7) if period else 7.0
    return int(count), days


@dataclass(frozen=True)
class ServingSettings:
    """How often each serving process looks for changes (Redis notices make model swaps immediate)."""

    model_poll_seconds: float = 5.0
    fresh_poll_seconds: float = 1.0
    catalog_poll_seconds: float = 1.0
    rules_poll_seconds: float = 5.0
    trending_refresh_seconds: float = 60.0
    served_flush_seconds: float = 10.0  # answers served per model version, for click-through


@dataclass(frozen=True)
class MessagingSettings:
    """Where messages go and how hard shopcast pushes each way out (see README, "Messaging")."""

    public_url: str = "http://127.0.0.1:8000"  # the base of tracking and unsubscribe links
    email_from: str = "shopcast demo shop <shop@localhost>"
    shop_name: str = "shopcast demo shop"
    templates_dir: Path | None = None
    concurrency: int = 16
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3_600.0
    claim_seconds: float = 120.0  # a `sending` row older than this was in flight when its worker died
    http_timeout_seconds: float = 10.0
    rates: dict[str, float] = field(default_factory=dict)  # channel -> messages per second
    providers: dict[str, str] = field(default_factory=dict)  # FCM_CREDENTIALS, X_TOKEN, … (see README)

    def provider(self, name: str) -> str | None:
        return self.providers.get(name) or None


PROVIDER_VARIABLES = (
    "FCM_CREDENTIALS",
    "FCM_API_URL",
    "PUSH_WEBHOOK_URL",
    "PUSH_WEBHOOK_SECRET",
    "X_TOKEN",
    "X_API_URL",
    "WEIBO_TOKEN",
    "WEIBO_API_URL",
    "WECHAT_APP_ID",
    "WECHAT_SECRET",
    "WECHAT_THUMB_MEDIA_ID",
    "WECHAT_API_URL",
    "FACEBOOK_PAGE_ID",
    "FACEBOOK_TOKEN",
    "FACEBOOK_API_URL",
    "SOCIAL_WEBHOOK_URL",
    "SOCIAL_WEBHOOK_SECRET",
)


def _rates(text: str | None) -> dict[str, float]:
    """`email=50,push=200` -> {"email": 50.0, "push": 200.0}."""
    rates = {}
    for pair in (text or "").split(","):
        if pair.strip():
            name, _, value = pair.partition("=")
            rates[name.strip()] = float(value)
    return rates


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    json: bool = True


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database: DatabaseSettings
    redis: RedisSettings = field(default_factory=RedisSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    log: LogSettings = field(default_factory=LogSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    messaging: MessagingSettings = field(default_factory=MessagingSettings)
    campaigns: CampaignSettings = field(default_factory=CampaignSettings)
    smtp_url: str | None = None
    secret_key: str | None = None

    def resolved_secret_key(self) -> str:
        """The configured secret, or the one generated into the data directory on first use."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `environ` (default: `.env` in the working directory, then os.environ)."""
    if environ is None:
        env: dict[str, str] = {k: v for k, v in dotenv_values(".env").items() if v is not None}
        env.update(os.environ)
    else:
        env = dict(environ)

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(f"SHOPCAST_{name}")
        return value if value not in (None, "") else default

    data_dir = Path(get("DATA_DIR", "var") or "var")
    database_url = get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'shopcast.db'}"
    channels = tuple(
        c.strip() for c in (get("CHANNELS") or ",".join(DEFAULT_CHANNELS)).split(",") if c.strip()
    )
    return Settings(
        data_dir=data_dir,
        database=DatabaseSettings(
            url=database_url,
            pool_size=int(get("DATABASE_POOL_SIZE", "10") or 10),
            echo=_flag(get("DATABASE_ECHO")),
        ),
        redis=RedisSettings(url=get("REDIS_URL")),
        api=ApiSettings(
            max_body_bytes=int(get("MAX_BODY_BYTES", "10000000") or 0),
            rate_limit_per_minute=int(get("RATE_LIMIT_PER_MINUTE", "6000") or 0),
            key_cache_seconds=float(get("KEY_CACHE_SECONDS", "5") or 0),
            channels=channels,
        ),
        log=LogSettings(
            level=(get("LOG_LEVEL", "INFO") or "INFO").upper(),
            json=(get("LOG_FORMAT", "json") or "json") == "json",
        ),
        jobs=JobSettings(
            retrain_cron=env.get("SHOPCAST_RETRAIN_CRON", "0 3 * * *").strip(),
            retrain_tune_seconds=float(get("RETRAIN_TUNE_SECONDS", "0") or 0),
        ),
        serving=ServingSettings(
            model_poll_seconds=float(get("MODEL_POLL_SECONDS", "5") or 5),
            fresh_poll_seconds=float(get("FRESH_POLL_SECONDS", "1") or 1),
            catalog_poll_seconds=float(get("CATALOG_POLL_SECONDS", "1") or 1),
            served_flush_seconds=float(get("SERVED_FLUSH_SECONDS", "10") or 10),
        ),
        messaging=MessagingSettings(
            public_url=(get("PUBLIC_URL", "http://127.0.0.1:8000") or "").rstrip("/"),
            email_from=get("EMAIL_FROM", MessagingSettings.email_from) or "",
            shop_name=get("SHOP_NAME", MessagingSettings.shop_name) or "",
            templates_dir=Path(t) if (t := get("TEMPLATES_DIR")) else None,
            concurrency=int(get("SEND_CONCURRENCY", "16") or 16),
            max_attempts=int(get("SEND_MAX_ATTEMPTS", "8") or 8),
            backoff_seconds=float(get("SEND_BACKOFF_SECONDS", "30") or 30),
            claim_seconds=float(get("SEND_CLAIM_SECONDS", "120") or 120),
            http_timeout_seconds=float(get("HTTP_TIMEOUT_SECONDS", "10") or 10),
            rates=_rates(get("SEND_RATES")),
            providers={name: value for name in PROVIDER_VARIABLES if (value := get(name))},
        ),
        campaigns=CampaignSettings(
            frequency_cap=(cap := _cap(get("FREQUENCY_CAP")))[0],
            frequency_days=cap[1],
            plan_chunk=int(get("PLAN_CHUNK", "1000") or 1000),
            tick_seconds=float(get("CAMPAIGN_TICK_SECONDS", "1") or 1),
        ),
        smtp_url=get("SMTP_URL"),
        secret_key=get("SECRET_KEY"),
    )
