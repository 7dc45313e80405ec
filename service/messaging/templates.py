"""Message templates: shipped defaults (the `templates/` folder) and staff versions in the store.

A template has a name, a kind (`email`, `push`, `social`), a locale variant and parts:

    email   subject, html, text  (+ preheader)
    push    title, body          (+ url)
    social  text                 (+ title, html: WeChat articles)

Shipped files live at `templates/<kind>/<name>/<locale>/` (`subject.txt`, `preheader.txt`,
`body.html`, `body.txt`, `title.txt`, `url.txt`, `text.txt`). Staff saves add a new version,
validated first (every part must parse; errors name the part and line). A staff template of
a kind and name shadows the shipped one. The recipient's locale picks the variant: `zh-Hant-TW` tries
`zh-Hant-TW`, `zh-Hant`, `zh`, then the default (staff: locale "", shipped: `en`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import Conflict, InvalidInput, NotFound
from service.messaging.rendering import Renderer, RenderError
from service.storage.tables import message_templates

PARTS = {
    "email": (("subject", "html", "text"), ("preheader",)),
    "push": (("title", "body"), ("url",)),
    "social": (("text",), ("title", "html")),
}
HTML_PARTS = frozenset({"html"})
FILES = {
    "subject.txt": "subject",
    "preheader.txt": "preheader",
    "body.html": "html",
    "body.txt": "text",
    "title.txt": "title",
    "url.txt": "url",
    "text.txt": "text",
}
PUSH_FILES = {"body.txt": "body"}
SHIPPED_DEFAULT_LOCALE = "en"
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class MessageTemplate:
    name: str
    kind: str
    locale: str  # "" for the default variant of a staff template
    version: int  # 0 for a shipped template
    parts: dict[str, str]
    source: str  # "shipped" | "staff"
    created_at: datetime | None = None
    note: str | None = None


def locale_chain(locale: str | None) -> list[str]:
    """`zh-Hant-TW` -> [`zh-Hant-TW`, `zh-Hant`, `zh`]; matching ignores case and `_`/`-`."""
    if not locale:
        return []
    pieces = locale.replace("_", "-").split("-")
    return ["-".join(pieces[:n]) for n in range(len(pieces), 0, -1)]


def default_templates_dir() -> Path:
    """The `templates/` folder beside the package (a checkout), else in the working directory."""
    beside = Path(__file__).resolve().parents[2] / "templates"
    return beside if beside.is_dir() else Path("templates").resolve()


def load_shipped(root: Path) -> dict[tuple[str, str, str], MessageTemplate]:
    """Shipped templates by (kind, name, locale)."""
    found: dict[tuple[str, str, str], MessageTemplate] = {}
    for kind in PARTS:
        for folder in sorted((root / kind).glob("*/*/")) if (root / kind).is_dir() else []:
            name, locale = folder.parent.name, folder.name
            if name.startswith("_"):
                continue
            files = FILES | (PUSH_FILES if kind == "push" else {})
            parts = {
                files[f.name]: f.read_text(encoding="utf-8").rstrip("\n")
                for f in sorted(folder.iterdir())
                if f.name in files
            }
            found[(kind, name, locale)] = MessageTemplate(name, kind, locale, 0, parts, "shipped")
    return found


class TemplateStore:
    """Templates are identified by kind and name: `recommended_for_you` exists as email and push."""

    def __init__(self, engine: AsyncEngine, renderer: Renderer, root: Path) -> None:
        self.engine = engine
        self.renderer = renderer
        self.root = root
        self._shipped = load_shipped(root)
        self._cache: dict[tuple[str, str], tuple[float, list[Any]]] = {}

    @property
    def shipped(self) -> dict[tuple[str, str, str], MessageTemplate]:
        return self._shipped

    def check(self, kind: str, parts: dict[str, str]) -> None:
        """InvalidInput naming every part that is missing, unknown or does not parse (with its line)."""
        if kind not in PARTS:
            problem = {"key": "kind", "message": "email, push or social"}
            raise InvalidInput(f"unknown template kind {kind!r}", extra=[problem])
        required, optional = PARTS[kind]
        problems: list[dict[str, Any]] = []
        for part in required:
            if not parts.get(part, "").strip():
                problems.append({"key": f"parts.{part}", "message": f"a {kind} template needs a {part}"})
        allowed = ", ".join(required + optional)
        for part in sorted(set(parts) - set(required) - set(optional)):
            problems.append(
                {"key": f"parts.{part}", "message": f"not a part of {kind} templates ({allowed})"}
            )
        for part, source in parts.items():
            try:
                self.renderer.check(part, source, html=part in HTML_PARTS)
            except RenderError as exc:
                problems.append({"key": f"parts.{part}", "message": exc.message, "line": exc.line})
        if problems:
            raise InvalidInput("the template does not compile; nothing was saved", extra=problems)

    async def save(
        self, kind: str, name: str, parts: dict[str, str], *, locale: str = "", note: str | None = None
    ) -> MessageTemplate:
        """Store a new version (the next number for this kind, name and locale)."""
        self.check(kind, parts)
        t = message_templates.c
        for _ in range(3):  # two staff saving at once: the loser takes the next version
            async with self.engine.begin() as conn:
                latest = (
                    await conn.execute(
                        select(func.max(t.version)).where(t.kind == kind, t.name == name, t.locale == locale)
                    )
                ).scalar()
                version = int(latest or 0) + 1
                try:
                    await conn.execute(
                        insert(message_templates).values(
                            kind=kind, name=name, locale=locale, version=version, parts=parts, note=note
                        )
                    )
                except IntegrityError:
                    continue
            self._cache.pop((kind, name), None)
            return await self.get(kind, name, locale=locale, version=version, exact=True)
        raise Conflict("the template is being saved by someone else; try again")

    async def get(
        self,
        kind: str,
        name: str,
        *,
        locale: str | None = None,
        version: int | None = None,
        exact: bool = False,
    ) -> MessageTemplate:
        """The template to render for `locale`: the newest staff version, else the shipped one.

        Staff versions are read from the store at most every `CACHE_SECONDS` per name (a campaign
        renders the same template for every recipient); a save in this process is seen at once.
        """
        wanted = [locale or ""] if exact else [*locale_chain(locale), ""]
        rows = await self._rows(kind, name)
        if rows:
            by_locale: dict[str, list[Any]] = {}
            for row in rows:
                by_locale.setdefault(row.locale.lower(), []).append(row)
            for candidate in wanted:
                for row in by_locale.get(candidate.lower(), []):
                    if version is None or row.version == version:
                        return _staff(row)
            if version is not None or exact:
                raise NotFound(f"{kind} template {name!r} has no version {version} for locale {locale!r}")
        shipped = {loc.lower(): tpl for (k, n, loc), tpl in self._shipped.items() if (k, n) == (kind, name)}
        for candidate in [*locale_chain(locale), SHIPPED_DEFAULT_LOCALE]:
            if candidate.lower() in shipped:
                return shipped[candidate.lower()]
        raise NotFound(f"no {kind} template named {name!r}")

    async def _rows(self, kind: str, name: str) -> list[Any]:
        cached = self._cache.get((kind, name))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        t = message_templates.c
        query = select(message_templates).where(t.kind == kind, t.name == name).order_by(t.version.desc())
        async with self.engine.connect() as conn:
            rows = list((await conn.execute(query)).all())
        if len(self._cache) > 1_000:
            self._cache.clear()
        self._cache[(kind, name)] = (time.monotonic() + CACHE_SECONDS, rows)
        return rows

    async def all(self) -> list[MessageTemplate]:
        """The newest version of every staff variant, then the shipped templates they do not shadow."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(message_templates))).all()
        newest: dict[tuple[str, str, str], Any] = {}
        for row in rows:
            key = (row.kind, row.name, row.locale)
            if key not in newest or row.version > newest[key].version:
                newest[key] = row
        staff = sorted((_staff(r) for r in newest.values()), key=lambda x: (x.kind, x.name, x.locale))
        names = {(x.kind, x.name) for x in staff}
        shipped = [tpl for (k, n, _), tpl in sorted(self._shipped.items()) if (k, n) not in names]
        return staff + shipped

    async def versions(self, kind: str, name: str) -> list[MessageTemplate]:
        t = message_templates.c
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(message_templates)
                    .where(t.kind == kind, t.name == name)
                    .order_by(t.locale, t.version)
                )
            ).all()
        return [_staff(r) for r in rows]


def _staff(row: Any) -> MessageTemplate:
    m = row._mapping
    return MessageTemplate(
        m["name"], m["kind"], m["locale"], m["version"], dict(m["parts"]), "staff", m["created_at"], m["note"]
    )
