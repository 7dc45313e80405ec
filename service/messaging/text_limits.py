"""How long a post is on each social channel, counted the way that channel counts it.

- X: twitter-text's weighted length, limit 280: code points in the Latin, Greek, Cyrillic and
  similar blocks (U+0000-U+10FF) and a few punctuation ranges weigh 1, everything else (CJK,
  emoji…) weighs 2; every URL counts as 23 (t.co), whatever its length.
- Weibo: 140 "characters", where two half-width (ASCII) characters make one; links become t.cn
  short links of 20 half-width characters.
- WeChat (Official Account article): title ≤ 32 characters, digest ≤ 128, content ≤ 20,000.
- Facebook Page post: 63,206 characters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
X_URL_LENGTH = 23
X_LIMIT = 280
WEIBO_LIMIT = 140
WEIBO_URL_HALF_WIDTH = 20
FACEBOOK_LIMIT = 63_206
WECHAT_TITLE_LIMIT = 32
WECHAT_DIGEST_LIMIT = 128
WECHAT_CONTENT_LIMIT = 20_000
_X_LIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))


def _x_weight(char: str) -> int:
    point = ord(char)
    return 1 if any(low <= point <= high for low, high in _X_LIGHT) else 2


def x_length(text: str) -> int:
    """The length X counts for `text` (URLs as 23)."""
    total, last = 0, 0
    for match in URL.finditer(text):
        total += sum(_x_weight(c) for c in text[last : match.start()]) + X_URL_LENGTH
        last = match.end()
    return total + sum(_x_weight(c) for c in text[last:])


def weibo_length(text: str) -> int:
    """Weibo's count: half-width characters are half a character; links are t.cn links."""
    half = 0
    last = 0
    for match in URL.finditer(text):
        half += _half_widths(text[last : match.start()]) + WEIBO_URL_HALF_WIDTH
        last = match.end()
    half += _half_widths(text[last:])
    return math.ceil(half / 2)


def _half_widths(text: str) -> int:
    return sum(1 if ord(c) < 0x80 else 2 for c in text)


@dataclass(frozen=True)
class TooLong:
    channel: str
    field: str
    length: int
    limit: int
    unit: str

    def message(self) -> str:
        return (
            f"{self.channel} {self.field} is {self.length} {self.unit} long; "
            f"{self.channel} allows at most {self.limit}"
        )


def check_post(channel: str, text: str, title: str | None = None) -> TooLong | None:
    """The first limit `text` (and the title, where the channel has one) breaks on `channel`."""
    if channel == "x" and (n := x_length(text)) > X_LIMIT:
        return TooLong("x", "text", n, X_LIMIT, "weighted characters (URLs count 23, CJK 2)")
    if channel == "weibo" and (n := weibo_length(text)) > WEIBO_LIMIT:
        return TooLong("weibo", "text", n, WEIBO_LIMIT, "characters (two half-width count one)")
    if channel == "facebook" and len(text) > FACEBOOK_LIMIT:
        return TooLong("facebook", "text", len(text), FACEBOOK_LIMIT, "characters")
    if channel == "wechat":
        if title is not None and len(title) > WECHAT_TITLE_LIMIT:
            return TooLong("wechat", "title", len(title), WECHAT_TITLE_LIMIT, "characters")
        if len(text) > WECHAT_CONTENT_LIMIT:
            return TooLong("wechat", "text", len(text), WECHAT_CONTENT_LIMIT, "characters")
    return None


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary with an ellipsis (for push titles/bodies)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"
