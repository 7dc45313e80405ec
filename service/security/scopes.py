"""API key scopes, as DESIGN.md lists them; `admin` grants every scope."""

from __future__ import annotations

from collections.abc import Iterable

SCOPES = (
    "events:write",
    "catalog:write",
    "users:write",
    "recs:read",
    "campaigns:write",
    "analytics:read",
    "admin",
)


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes from `a,b` or an iterable; raises ValueError naming any unknown scope."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError(f"at least one scope is needed; known: {', '.join(SCOPES)}")
    return scopes


def grants(held: Iterable[str], wanted: Iterable[str]) -> bool:
    """True when the held scopes include `admin` or any one of the wanted scopes."""
    held_set = set(held)
    return "admin" in held_set or any(scope in held_set for scope in wanted)
