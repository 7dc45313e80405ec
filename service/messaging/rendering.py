"""Rendering templates in Jinja2's sandbox: staff-written templates are untrusted.

One `Renderer` holds two immutable sandboxed environments (HTML autoescaped, plain text not),
both with `StrictUndefined`, so a template that needs a value the context lacks fails loudly
(at preview, or for that one recipient) instead of sending "Hello ,". Templates are compiled
once per source and cached. Money and dates are formatted for the recipient's locale (Babel).
Shipped templates (the `templates/` folder) can be extended or included by name.
"""

from __future__ import annotations

import functools
import re
import sys
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from service.errors import ShopcastError

TEMPLATE_NAME = "<template>"
CACHE_SIZE = 512
DEFAULT_LOCALE = "en"


class RenderError(ShopcastError):
    """A template that does not parse or does not render; `line` is the template line when known."""

    status_code = 422

    def __init__(self, part: str, message: str, line: int | None = None) -> None:
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {message}", extra=[{"key": part, "message": message, "line": line}])
        self.part = part
        self.message = message
        self.line = line


@functools.lru_cache(maxsize=256)
def babel_locale(tag: str | None) -> Locale:
    """The Babel locale for a tag like `zh-CN` or `pt_BR`, or English when unknown."""
    try:
        return Locale.parse((tag or DEFAULT_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


@jinja2.pass_context
def _money(context: jinja2.runtime.Context, value: Any, currency: str | None = None) -> str:
    if value is None or value == "":
        return ""
    code = currency or context.get("currency") or "EUR"
    return _formatted_money(float(value), str(code), context.get("locale"))


@functools.lru_cache(maxsize=65_536)
def _formatted_money(value: float, currency: str, locale: str | None) -> str:
    """Cached: a campaign formats the same prices for every recipient (Babel takes ~50 µs each)."""
    return str(format_currency(value, currency, locale=babel_locale(locale)))


@jinja2.pass_context
def _number(context: jinja2.runtime.Context, value: Any) -> str:
    return str(format_decimal(float(value), locale=babel_locale(context.get("locale"))))


@jinja2.pass_context
def _date(context: jinja2.runtime.Context, value: Any, format: str = "medium") -> str:
    locale = babel_locale(context.get("locale"))
    moment = _as_datetime(value)
    return str(format_date(moment.date(), format=format, locale=locale))


@jinja2.pass_context
def _datetime(context: jinja2.runtime.Context, value: Any, format: str = "medium") -> str:
    locale = babel_locale(context.get("locale"))
    return str(format_datetime(_as_datetime(value), format=format, locale=locale, tzinfo=context.get("tz")))


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


def _truncate_words(value: str, count: int = 20) -> str:
    words = str(value).split()
    return " ".join(words[:count]) + (" …" if len(words) > count else "")


_DICT_ATTRIBUTES = frozenset(dir(dict))

# While a page renders, each value a template prints goes here, and a placeholder to the markup.
_PAGE_VALUES: ContextVar[list[str] | None] = ContextVar("shopcast_page_values", default=None)
VALUE_OPEN, VALUE_CLOSE = "\ue000", "\ue001"  # private-use characters: never in a template's text
VALUE_PATTERN = re.compile(f"{VALUE_OPEN}(\\d+){VALUE_CLOSE}")


@dataclass(frozen=True)
class Page:
    """An HTML part kept as its structure (`skeleton`, printed values as placeholders) and values.

    Recipients of one template share a handful of skeletons, so work that depends only on the
    markup (CSS inlining) is done once per skeleton; `html` is the page itself.
    """

    skeleton: str
    values: tuple[str, ...]

    @property
    def html(self) -> str:
        return fill(self.skeleton, self.values)


def fill(skeleton: str, values: tuple[str, ...]) -> str:
    """The skeleton with each placeholder replaced by its (escaped) value."""
    pieces = VALUE_PATTERN.split(skeleton)  # text, index, text, index, …, text
    pieces[1::2] = [values[int(index)] for index in pieces[1::2]]
    return "".join(pieces)


def _finalize(value: Any) -> Any:
    """Jinja's hook on every printed value (HTML only): a placeholder while a page is recorded.

    Markup that carries tags (`|safe` HTML) stays in the skeleton: it is structure, not a value.
    """
    values = _PAGE_VALUES.get()
    if values is None:
        return value
    text = escape(value)  # what Jinja would print; StrictUndefined raises here as it would there
    if "<" in text or VALUE_OPEN in text:
        return text
    values.append(text)
    n = len(values) - 1
    return _PLACEHOLDERS[n] if n < len(_PLACEHOLDERS) else placeholder(n)


def placeholder(n: int) -> Markup:
    """Where value `n` goes in a skeleton."""
    return Markup(f"{VALUE_OPEN}{n}{VALUE_CLOSE}")  # noqa: S704 (digits between private-use characters)


_PLACEHOLDERS = tuple(placeholder(n) for n in range(512))


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with a fast path for `item.title` on the plain dicts of the context.

    Jinja tries the attribute first and catches AttributeError before it reads the key, about a
    hundred times a message; a plain dict's key that is not also a dict attribute (`items`,
    `keys`…) is read at once instead, with the same result and no attribute access at all.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _environment(templates_dir: Path | None, *, html: bool) -> ImmutableSandboxedEnvironment:
    loader = jinja2.FileSystemLoader(str(templates_dir)) if templates_dir and templates_dir.is_dir() else None
    env = _Sandbox(
        loader=loader,
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
        finalize=_finalize if html else None,
    )
    env.filters.update(
        money=_money, number=_number, date=_date, datetime=_datetime, truncate_words=_truncate_words
    )
    return env


class Renderer:
    """Compiles and renders template sources; HTML parts are autoescaped."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self._envs = {
            True: _environment(templates_dir, html=True),
            False: _environment(templates_dir, html=False),
        }
        self._compiled: OrderedDict[tuple[bool, str], jinja2.Template] = OrderedDict()

    def check(self, part: str, source: str, *, html: bool = False) -> None:
        """Raise RenderError (with the line) when `source` does not parse."""
        self.compile(part, source, html=html)

    def compile(self, part: str, source: str, *, html: bool = False) -> jinja2.Template:
        key = (html, source)
        template = self._compiled.get(key)
        if template is not None:
            self._compiled.move_to_end(key)
            return template
        try:
            template = self._envs[html].from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(part, exc.message or "syntax error", exc.lineno) from None
        except jinja2.TemplateError as exc:
            raise RenderError(part, str(exc)) from None
        self._compiled[key] = template
        if len(self._compiled) > CACHE_SIZE:
            self._compiled.popitem(last=False)
        return template

    def render_page(self, part: str, source: str, context: dict[str, Any]) -> Page:
        """An HTML part as its skeleton and values (`Page.html` is what `render` would give)."""
        token = _PAGE_VALUES.set([])
        try:
            skeleton = self.render(part, source, context, html=True)
            values = tuple(_PAGE_VALUES.get() or ())
        finally:
            _PAGE_VALUES.reset(token)
        return Page(skeleton.strip(), values)

    def render(self, part: str, source: str, context: dict[str, Any], *, html: bool = False) -> str:
        template = self.compile(part, source, html=html)
        try:
            return template.render(context)
        except SecurityError as exc:
            raise RenderError(part, f"not allowed in templates: {exc}", _template_line()) from None
        except jinja2.UndefinedError as exc:
            raise RenderError(part, f"missing value: {exc.message}", _template_line()) from None
        except jinja2.TemplateNotFound as exc:
            raise RenderError(part, f"no shipped template named {exc.name!r}", _template_line()) from None
        except jinja2.TemplateError as exc:
            raise RenderError(part, str(exc), _template_line()) from None
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
            raise RenderError(part, f"{type(exc).__name__}: {exc}", _template_line()) from None


def _template_line() -> int | None:
    """The template line of the error being handled (Jinja rewrites tracebacks to point there)."""
    tb: TracebackType | None = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
