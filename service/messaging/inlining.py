"""CSS inlined into email HTML (css-inline), once per page structure rather than once per recipient.

Inlining parses the page, matches every rule against every element and writes the page again:
about a fifth of the time a personalized email takes to make. Yet which styles land where
depends only on the markup, and the recipients of one template share a handful of skeletons
(`rendering.Page`: the page with each printed value as a placeholder). So a skeleton is
inlined once, cached, and each recipient's values are filled into the inlined skeleton.

That is the same page as inlining the filled one whenever values sit only where CSS cannot see
them: in text, or in attributes no selector reads here (href, src, alt, title…). A page whose
values reach a class, id or style attribute or a `<style>` element, or whose CSS has selectors
that read attributes or content (`[…]`, `:empty`, `:has`), is inlined whole, every time.
"""

from __future__ import annotations

import functools
import re

import css_inline

from service.messaging.rendering import VALUE_OPEN, Page, fill

_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_TAG_WITH_VALUE = re.compile(f"<[^<>]*{VALUE_OPEN}[^<>]*>")
_UNSTYLED_ATTRIBUTE = re.compile(
    r"""\s(?:href|src|alt|title|width|height|lang|content|value)\s*=\s*(?:"[^"]*"|'[^']*')""",
    re.IGNORECASE,
)
_SELECTORS_READING_CONTENT = ("[", ":empty", ":has", ":blank", ":contains")


def inline_css(html: str | Page) -> str:
    """The page with its `<style>` rules moved into `style` attributes."""
    if isinstance(html, str):
        return str(_INLINER.inline(html))
    inlined = inlined_skeleton(html.skeleton)
    return fill(inlined, html.values) if inlined is not None else str(_INLINER.inline(html.html))


@functools.lru_cache(maxsize=256)
def inlined_skeleton(skeleton: str) -> str | None:
    """The skeleton inlined, or None when its values could change what the CSS selects."""
    if not _values_out_of_reach(skeleton):
        return None
    inlined = str(_INLINER.inline(skeleton))
    return inlined if inlined.count(VALUE_OPEN) == skeleton.count(VALUE_OPEN) else None


def _values_out_of_reach(skeleton: str) -> bool:
    for css in _STYLE_BLOCK.findall(skeleton):
        if VALUE_OPEN in css or any(s in css for s in _SELECTORS_READING_CONTENT):
            return False
    return all(
        VALUE_OPEN not in _UNSTYLED_ATTRIBUTE.sub("", tag) for tag in _TAG_WITH_VALUE.findall(skeleton)
    )
