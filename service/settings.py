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
class ServingSettings:
    """How often each serving process looks for changes (Redis notices make model swaps immediate)."""

    model_poll_seconds: float = 5.0
    fresh_poll_seconds: float = 1.0
    catalog_poll_seconds: float = 1.0
    rules_poll_seconds: float = 5.0
    trending_refresh_seconds: float = 60.0


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
        ),
        smtp_url=get("SMTP_URL"),
        secret_key=get("SECRET_KEY"),
    )
