"""Audience rules: a small JSON language over users and their events, compiled to SQL.

    {"all": [rule, …]}    every rule holds          {"any": [rule, …]}   at least one holds
    {"not": rule}         the rule does not hold
    {"event": "view", "category": "tea", "within_days": 30, "min_count": 2, "channel": "web"}
                          did this (on an item of that category, or `"item": id`) at least
                          min_count times (default 1) in the last N days (default: ever)
    {"inactive_days": 30} no event at all in the last 30 days
    {"last_purchase_channel": "store"}
    {"consent": "email"}  has given consent for the channel
    {"attribute": "city", "equals": "Lyon"} | {"attribute": "city", "in": [...]} |
    {"attribute": "vip", "exists": true}    (`locale` and `timezone` are the user's own fields)
    {"affinity": {"category": "tea"}, "top": 1000}   (or {"item": id}): the users for whom the
                          served model ranks that item, or an item of that category, highest

"viewed tea in the last 7 days and did not buy":
    {"all": [{"event": "view", "category": "tea", "within_days": 7},
             {"not": {"event": "purchase", "category": "tea", "within_days": 7}}]}

`parse` checks a rule tree and names the path of whatever is wrong (`rules.all[1].event`);
`condition` turns it into one SQL condition on `users.user_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import FieldProblem, InvalidInput
from service.records.events import EVENT_TYPES
from service.records.users import CONSENT_CHANNELS
from service.serving.model import ServingModel
from service.storage.tables import events, items, user_consents, users

RULE_KINDS = (
    "all",
    "any",
    "not",
    "event",
    "inactive_days",
    "last_purchase_channel",
    "consent",
    "attribute",
    "affinity",
)
USER_FIELDS = ("locale", "timezone")
MAX_DEPTH = 8
MAX_RULES = 100
MAX_AFFINITY_USERS = 20_000
MAX_DAYS = 3_650


@dataclass(frozen=True)
class Rule:
    kind: str
    spec: dict[str, Any]
    children: tuple[Rule, ...] = ()


def parse(tree: Any, path: str = "rules") -> Rule:
    """A checked rule tree; InvalidInput naming every problem's path."""
    problems: list[FieldProblem] = []
    count = [0]
    rule = _parse(tree, path, 0, problems, count)
    if problems:
        raise InvalidInput.from_problems("the audience rules are not valid", problems)
    return rule


def _parse(tree: Any, path: str, depth: int, problems: list[FieldProblem], count: list[int]) -> Rule:
    count[0] += 1
    if count[0] > MAX_RULES:
        problems.append(FieldProblem(path, f"more than {MAX_RULES} rules"))
        return Rule("all", {})
    if depth > MAX_DEPTH:
        problems.append(FieldProblem(path, f"rules nest deeper than {MAX_DEPTH}"))
        return Rule("all", {})
    if not isinstance(tree, dict) or not tree:
        problems.append(FieldProblem(path, f"a rule is an object with one of: {', '.join(RULE_KINDS)}"))
        return Rule("all", {})
    kinds = [k for k in tree if k in RULE_KINDS]
    if len(kinds) != 1:
        found = ", ".join(map(str, tree)) or "nothing"
        problems.append(
            FieldProblem(path, f"found {found}; a rule has exactly one of: {', '.join(RULE_KINDS)}")
        )
        return Rule("all", {})
    kind = kinds[0]
    if kind in ("all", "any"):
        members = tree[kind]
        _no_extra(tree, {kind}, path, problems)
        if not isinstance(members, list) or not members:
            problems.append(FieldProblem(f"{path}.{kind}", "a non-empty list of rules"))
            return Rule(kind, {})
        children = tuple(
            _parse(m, f"{path}.{kind}[{n}]", depth + 1, problems, count) for n, m in enumerate(members)
        )
        return Rule(kind, {}, children)
    if kind == "not":
        _no_extra(tree, {kind}, path, problems)
        return Rule(kind, {}, (_parse(tree[kind], f"{path}.not", depth + 1, problems, count),))
    check = _CHECKS[kind]
    return Rule(kind, check(tree, path, problems))


def _no_extra(tree: dict[str, Any], allowed: set[str], path: str, problems: list[FieldProblem]) -> None:
    for key in tree:
        if key not in allowed:
            problems.append(
                FieldProblem(f"{path}.{key}", f"unknown field; allowed: {', '.join(sorted(allowed))}")
            )


def _text(value: Any, key: str, problems: list[FieldProblem], choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str) or not value or len(value) > 128 or "\x00" in value:
        problems.append(FieldProblem(key, "a non-empty string of at most 128 characters"))
        return ""
    if choices and value not in choices:
        problems.append(FieldProblem(key, f"{value!r} is not one of: {', '.join(choices)}"))
    return value


def _count(value: Any, key: str, problems: list[FieldProblem], high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        problems.append(FieldProblem(key, f"a whole number from 1 to {high}"))
        return 1
    return value


def _event(tree: dict[str, Any], path: str, problems: list[FieldProblem]) -> dict[str, Any]:
    _no_extra(tree, {"event", "category", "item", "within_days", "min_count", "channel"}, path, problems)
    spec: dict[str, Any] = {"event": _text(tree["event"], f"{path}.event", problems, EVENT_TYPES)}
    if "category" in tree and "item" in tree:
        problems.append(FieldProblem(path, "give category or item, not both"))
    for key in ("category", "item", "channel"):
        if key in tree:
            spec[key] = _text(tree[key], f"{path}.{key}", problems)
    if "within_days" in tree:
        spec["within_days"] = _count(tree["within_days"], f"{path}.within_days", problems, MAX_DAYS)
    spec["min_count"] = _count(tree.get("min_count", 1), f"{path}.min_count", problems, 10_000)
    return spec


def _inactive(tree: dict[str, Any], path: str, problems: list[FieldProblem]) -> dict[str, Any]:
    _no_extra(tree, {"inactive_days"}, path, problems)
    return {"days": _count(tree["inactive_days"], f"{path}.inactive_days", problems, MAX_DAYS)}


def _last_channel(tree: dict[str, Any], path: str, problems: list[FieldProblem]) -> dict[str, Any]:
    _no_extra(tree, {"last_purchase_channel"}, path, problems)
    return {"channel": _text(tree["last_purchase_channel"], f"{path}.last_purchase_channel", problems)}


def _consent(tree: dict[str, Any], path: str, problems: list[FieldProblem]) -> dict[str, Any]:
    _no_extra(tree, {"consent"}, path, problems)
    return {"channel": _text(tree["consent"], f"{path}.consent", problems, CONSENT_CHANNELS)}


def _attribute(tree: dict[str, Any], path: str, problems: list[FieldProblem]) -> dict[str, Any]:
    _no_extra(tree, {"attribute", "equals", "in", "exists"}, path, problems)
    spec: dict[str, Any] = {"attribute": _text(tree["attribute"], f"{path}.attribute", problems)}
    tests = [k for k in ("equals", "in", "exists") if k in tree]
    if len(tests) != 1:
        problems.append(FieldProblem(path, "an attribute rule has one of: equals, in, exists"))
        return spec
    test = tests[0]
    value = tree[test]
    if test == "equals":
        spec["in"] = [_scalar(value, f"{path}.equals", problems)]
    elif test == "in":
        if not isinstance(value, list) or not 1 <= len(value) <= 1_000:
            problems.append(FieldProblem(f"{path}.in", "a list of 1 to 1000 values"))
        else:
            spec["in"] = [_scalar(v, f"{path}.in[{n}]", problems) for n, v in enumerate(value)]
    else:
        if not isinstance(value, bool):
            problems.append(FieldProblem(f"{path}.exists", "true or false"))
        spec["exists"] = bool(value)
    return spec


def _scalar(value: Any, key: str, problems: list[FieldProblem]) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append(FieldProblem(key, "a string or a number"))
        return ""
    text = str(value)
    if len(text) > 256 or "\x00" in text:
        problems.append(FieldProblem(key, "at most 256 characters"))
    return text


def _affinity(tree: dict[str, Any], path: str, problems: list[FieldProblem]) -> dict[str, Any]:
    _no_extra(tree, {"affinity", "top"}, path, problems)
    target = tree["affinity"]
    spec: dict[str, Any] = {
        "top": _count(tree.get("top", 1_000), f"{path}.top", problems, MAX_AFFINITY_USERS)
    }
    if not isinstance(target, dict) or len(target) != 1 or next(iter(target)) not in ("item", "category"):
        problems.append(FieldProblem(f"{path}.affinity", 'either {"item": id} or {"category": name}'))
        return spec
    ((key, value),) = target.items()
    spec[key] = _text(value, f"{path}.affinity.{key}", problems)
    return spec


_CHECKS: dict[str, Callable[[dict[str, Any], str, list[FieldProblem]], dict[str, Any]]] = {
    "event": _event,
    "inactive_days": _inactive,
    "last_purchase_channel": _last_channel,
    "consent": _consent,
    "attribute": _attribute,
    "affinity": _affinity,
}


# -- SQL --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiler:
    """Turns rules into conditions; `affinity` reads the served model (None: nobody matches)."""

    model: ServingModel | None
    category_items: dict[str, list[str]]
    now: datetime

    def condition(self, rule: Rule) -> ColumnElement[bool]:
        user = users.c.user_id
        spec = rule.spec
        if rule.kind == "all":
            return and_(true(), *(self.condition(c) for c in rule.children))
        if rule.kind == "any":
            return or_(false(), *(self.condition(c) for c in rule.children))
        if rule.kind == "not":
            return not_(self.condition(rule.children[0]))
        if rule.kind == "event":
            return user.in_(self._event_users(spec))
        if rule.kind == "inactive_days":
            since = self.now - timedelta(days=spec["days"])
            return user.not_in(select(events.c.user_id).where(events.c.occurred_at >= since))
        if rule.kind == "last_purchase_channel":
            last = (
                select(events.c.user_id, func.max(events.c.occurred_at).label("at"))
                .where(events.c.event == "purchase")
                .group_by(events.c.user_id)
                .subquery()
            )
            on_channel = select(events.c.user_id).join(
                last, and_(last.c.user_id == events.c.user_id, last.c.at == events.c.occurred_at)
            )
            on_channel = on_channel.where(events.c.event == "purchase", events.c.channel == spec["channel"])
            return user.in_(on_channel)
        if rule.kind == "consent":
            return user.in_(
                select(user_consents.c.user_id).where(
                    user_consents.c.channel == spec["channel"], user_consents.c.granted.is_(True)
                )
            )
        if rule.kind == "attribute":
            return self._attribute(spec)
        return user.in_(self.affinity_users(spec))

    def _event_users(self, spec: dict[str, Any]) -> Any:
        query = select(events.c.user_id).where(events.c.event == spec["event"])
        if "within_days" in spec:
            query = query.where(events.c.occurred_at >= self.now - timedelta(days=spec["within_days"]))
        if "item" in spec:
            query = query.where(events.c.item_id == spec["item"])
        if "category" in spec:
            query = query.where(
                events.c.item_id.in_(select(items.c.item_id).where(items.c.category == spec["category"]))
            )
        if "channel" in spec:
            query = query.where(events.c.channel == spec["channel"])
        if spec["min_count"] > 1:
            query = query.group_by(events.c.user_id).having(func.count() >= spec["min_count"])
        return query

    def _attribute(self, spec: dict[str, Any]) -> ColumnElement[bool]:
        name = spec["attribute"]
        value: Any = users.c[name] if name in USER_FIELDS else users.c.attributes[name].as_string()
        condition: ColumnElement[bool]
        if "exists" in spec:
            condition = value.is_not(None) if spec["exists"] else value.is_(None)
        else:
            condition = value.in_(spec["in"])
        return condition

    def affinity_users(self, spec: dict[str, Any]) -> list[str]:
        """Users whose precomputed "discover" ranking holds the item (or the category) highest."""
        model = self.model
        if model is None or not model.precomputed:
            return []
        wanted = [spec["item"]] if "item" in spec else self.category_items.get(spec["category"], [])
        rows = np.array([r for i in wanted if (r := model.item_row.get(i)) is not None], dtype=np.int64)
        if not len(rows):
            return []
        ranked = np.asarray(model.bundle.serving["discover.items"])
        scores = np.asarray(model.bundle.serving["discover.scores"], dtype=np.float32)
        hit = np.isin(ranked, rows)
        best = np.where(hit, scores, -np.inf).max(axis=1)
        holders = np.flatnonzero(np.isfinite(best))
        top = holders[np.argsort(-best[holders], kind="stable")[: spec["top"]]]
        user_ids = model.bundle.user_ids
        return [str(user_ids[u]) for u in top.tolist()]


def uses_affinity(rule: Rule) -> bool:
    return rule.kind == "affinity" or any(uses_affinity(c) for c in rule.children)


async def compiler(engine: AsyncEngine, model: ServingModel | None, rule: Rule) -> Compiler:
    """A compiler for `rule` (loads category members only when an affinity rule needs them)."""
    members: dict[str, list[str]] = {}
    if uses_affinity(rule):
        async with engine.connect() as conn:
            for item_id, category in await conn.execute(select(items.c.item_id, items.c.category)):
                if category:
                    members.setdefault(category, []).append(item_id)
    return Compiler(model, members, datetime.now(UTC))
