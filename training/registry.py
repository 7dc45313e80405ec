"""Published model versions: a directory each under `<data dir>/models/`, a row each in the store.

Publishing writes the artifact into a staging directory, renames it into place (atomic on one
filesystem), then records the version as current. Rollback makes an older version current
again. The newest `keep` versions stay on disk, and the current one always does.
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from models import ArtifactError, ModelBundle, load, save
from service.storage.tables import model_versions

STALE_STAGING_SECONDS = 3_600


class RegistryError(ValueError):
    """A version that does not exist, or whose files are gone."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    created_at: datetime
    activated_at: datetime | None
    forced: bool
    metrics: dict[str, Any]
    summary: dict[str, Any]
    current: bool = False


def new_version(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class ModelRegistry:
    def __init__(self, engine: AsyncEngine, models_dir: Path, keep: int = 5) -> None:
        self._engine = engine
        self.models_dir = models_dir
        self.keep = keep

    def path(self, version: str) -> Path:
        return self.models_dir / version

    async def versions(self) -> list[ModelVersion]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(select(model_versions).order_by(model_versions.c.created_at.desc()))
            ).all()
        active = [r for r in rows if r.activated_at is not None]
        current = max(active, key=lambda r: r.activated_at).version if active else None
        return [
            ModelVersion(
                r.version, r.created_at, r.activated_at, r.forced, r.metrics, r.summary, r.version == current
            )
            for r in rows
        ]

    async def current(self) -> ModelVersion | None:
        return next((v for v in await self.versions() if v.current), None)

    async def load_current(self) -> ModelBundle | None:
        version = await self.current()
        if version is None:
            return None
        return load(self.path(version.version))

    async def publish(self, bundle: ModelBundle, *, forced: bool = False, summary: dict[str, Any]) -> str:
        """Write, move into place, record as current; returns the version."""
        version = new_version()
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".staging-{version}"
        save(bundle, staging)
        staging.rename(self.path(version))
        now = datetime.now(UTC)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    model_versions.insert().values(
                        version=version,
                        created_at=now,
                        activated_at=now,
                        forced=forced,
                        metrics=bundle.metadata.get("metrics", {}),
                        summary=summary,
                    )
                )
        except Exception:
            shutil.rmtree(self.path(version), ignore_errors=True)
            raise
        await self.prune()
        return version

    async def rollback(self, version: str) -> ModelVersion:
        """Serve `version` again (its files must still be there)."""
        if version not in {v.version for v in await self.versions()}:
            raise RegistryError(f"no version {version!r}; see `shopcast models list`")
        if not self.path(version).exists():
            raise RegistryError(f"version {version} has no files in {self.models_dir} (pruned?)")
        try:
            load(self.path(version))
        except ArtifactError as exc:
            raise RegistryError(f"version {version} cannot be served: {exc}") from None
        async with self._engine.begin() as conn:
            await conn.execute(
                update(model_versions)
                .where(model_versions.c.version == version)
                .values(activated_at=datetime.now(UTC))
            )
        current = await self.current()
        assert current is not None
        return current

    async def prune(self) -> list[str]:
        """Remove the files of versions beyond the newest `keep` (never the current one)."""
        versions = await self.versions()
        removed = []
        for old in versions[self.keep :]:
            if not old.current and self.path(old.version).exists():
                shutil.rmtree(self.path(old.version))
                removed.append(old.version)
        for leftover in self.models_dir.glob(".staging-*"):
            if time.time() - leftover.stat().st_mtime > STALE_STAGING_SECONDS:  # a crashed publish
                shutil.rmtree(leftover, ignore_errors=True)
        return removed
