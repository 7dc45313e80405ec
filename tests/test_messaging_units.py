"""Signed links, channel length rules, sandboxed rendering, email assembly, backoff."""

from __future__ import annotations

import binascii
import email
import random
import time
from email import policy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.messaging.email_build import Email, build, html_body, with_open_pixel, with_preheader
from service.messaging.inlining import inline_css
from service.messaging.links import InvalidToken, LinkSigner
from service.messaging.rendering import Page, Renderer, RenderError
from service.messaging.sender import backoff
from service.messaging.templates import default_templates_dir, load_shipped, locale_chain
from service.messaging.text_limits import check_post, shorten, weibo_length, x_length

# -- links ------------------------------------------------------------------------------------


def test_a_token_verifies_only_for_its_purpose_and_signer() -> None:
    signer = LinkSigner("secret-a", "https://shop.test")
    token = signer.token("unsubscribe", {"us": "u1", "ch": "email"})
    assert signer.verify("unsubscribe", token) == {"us": "u1", "ch": "email"}
    with pytest.raises(InvalidToken):
        signer.verify("click", token)
    with pytest.raises(InvalidToken):
        LinkSigner("secret-b", "https://shop.test").verify("unsubscribe", token)


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-2] + "AA", lambda t: "A" + t[1:], lambda t: t.split(".")[0], lambda t: "x"]
)
def test_altered_tokens_are_refused(mangle: object) -> None:
    signer = LinkSigner("s", "https://shop.test")
    token = signer.token("click", {"us": "u1", "i": "item", "u": "https://shop.test/i"})
    with pytest.raises(InvalidToken):
        signer.verify("click", mangle(token))  # type: ignore[operator]


def test_expired_tokens_are_refused() -> None:
    signer = LinkSigner("s", "https://shop.test")
    token = signer.token("preferences", {"us": "u"}, ttl_seconds=-1)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify("preferences", token)


def test_claims_cannot_be_swapped_between_users() -> None:
    signer = LinkSigner("s", "https://shop.test")
    payload_a, sig_a = signer.token("unsubscribe", {"us": "alice"}).split(".")
    payload_b, _ = signer.token("unsubscribe", {"us": "bob"}).split(".")
    with pytest.raises(InvalidToken):
        signer.verify("unsubscribe", f"{payload_b}.{sig_a}")
    assert signer.verify("unsubscribe", f"{payload_a}.{sig_a}") == {"us": "alice"}


# -- channel limits ---------------------------------------------------------------------------


def test_x_counts_urls_as_23_and_cjk_as_2() -> None:
    assert x_length("hello") == 5
    assert x_length("新品") == 4
    assert x_length("see https://example.com/" + "a" * 200) == 4 + 23
    assert check_post("x", "a" * 280) is None
    problem = check_post("x", "新" * 141)
    assert problem is not None
    assert problem.limit == 280
    assert problem.length == 282
    assert "280" in problem.message()


def test_weibo_counts_two_half_width_characters_as_one() -> None:
    assert weibo_length("ab") == 1
    assert weibo_length("新品上架") == 4
    assert weibo_length("新 https://t.example/long/path") == 12  # 2 + 1 + 20 half-widths, rounded up
    assert check_post("weibo", "新" * 140) is None
    assert check_post("weibo", "新" * 141) is not None


def test_wechat_title_and_facebook_limits() -> None:
    problem = check_post("wechat", "body", title="标" * 33)
    assert problem is not None
    assert problem.field == "title"
    assert problem.limit == 32
    assert check_post("facebook", "a" * 63_206) is None
    assert check_post("facebook", "a" * 63_207) is not None


def test_push_text_is_shortened_at_a_word() -> None:
    assert shorten("short", 10) == "short"
    text = shorten("one two three four five six seven", 16)
    assert len(text) <= 16
    assert text.endswith("…")
    assert text.startswith("one two three")


# -- rendering --------------------------------------------------------------------------------

INJECTIONS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ self._TemplateReference__context }}",
    "{{ [].append(1) }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
    "{{ lipsum.__globals__ }}",
]


@pytest.mark.parametrize("source", INJECTIONS)
def test_template_injection_fails_safely(source: str) -> None:
    with pytest.raises(RenderError) as caught:
        Renderer().render("html", source, {"user": {}}, html=True)
    message = caught.value.detail
    assert "not allowed" in message or "missing value" in message or "undefined" in message.lower()


def test_missing_values_and_syntax_errors_name_the_line() -> None:
    renderer = Renderer()
    with pytest.raises(RenderError) as missing:
        renderer.render("text", "Hello\n{{ user.first_name }}\n", {"user": {}})
    assert missing.value.line == 2
    assert "first_name" in missing.value.detail
    with pytest.raises(RenderError) as syntax:
        renderer.check("html", "<p>\n\n{% if x %}open", html=True)
    assert syntax.value.line == 3


def test_html_is_escaped_and_money_follows_the_locale() -> None:
    renderer = Renderer()
    context = {"locale": "de-DE", "name": "<script>alert(1)</script>"}
    html = renderer.render("html", "{{ name }} {{ 1234.5|money('EUR') }}", context, html=True)
    assert "&lt;script&gt;" in html
    assert "1.234,50" in html
    assert "€" in html
    zh = renderer.render("text", "{{ 12|money('CNY') }}", {"locale": "zh-CN"})
    assert zh == "¥12.00"


def test_compiled_templates_are_cached() -> None:
    renderer = Renderer()
    assert renderer.compile("t", "{{ 1 }}") is renderer.compile("t", "{{ 1 }}")


def test_every_shipped_template_renders_in_both_locales() -> None:
    root = default_templates_dir()
    shipped = load_shipped(root)
    names = {(kind, name) for (kind, name, _) in shipped}
    assert {
        ("email", "recommended_for_you"),
        ("email", "back_in_stock"),
        ("email", "abandoned_cart"),
    } <= names
    assert {("email", "price_drop"), ("push", "recommended_for_you"), ("social", "featured_items")} <= names
    assert {loc for (_, _, loc) in shipped} == {"en", "zh-CN"}
    renderer = Renderer(root)
    item = {
        "item_id": "i1", "title": "Green tea", "price": 4.5, "previous_price": 6.0, "currency": "EUR",
        "url": "https://s.t/c?t=1", "raw_url": "https://s.t/i1", "image_url": None, "source": "featured",
    }  # fmt: skip
    context = {
        "user": {"first_name": "Ana"},
        "items": [item, {**item, "item_id": "i2", "title": "Mug"}],
        "item": item,
        "links": {"unsubscribe": "https://s.t/u", "preferences": "https://s.t/p"},
        "shop": {"name": "Tea Shop", "url": "https://s.t"},
        "campaign": None,
        "currency": "EUR",
    }
    for (_, name, locale), template in shipped.items():
        for part, source in template.parts.items():
            out = renderer.render(part, source, {**context, "locale": locale}, html=part == "html")
            assert out.strip(), f"{name}/{locale}/{part} rendered empty"
            if part == "html":
                assert "https://s.t/u" in out, f"{name}/{locale} lacks the unsubscribe link"


def test_locale_chain() -> None:
    assert locale_chain("zh-Hant-TW") == ["zh-Hant-TW", "zh-Hant", "zh"]
    assert locale_chain("pt_BR") == ["pt-BR", "pt"]
    assert locale_chain(None) == []


# -- email ------------------------------------------------------------------------------------


def test_an_email_parses_back_with_every_header_in_place() -> None:
    html = "<html><head><style>p { color: red }</style></head><body><p>Grüße</p></body></html>"
    message_id, raw = build(
        Email(
            sender="Tee Laden <shop@tea.test>",
            to="ana@example.test",
            subject="Für dich\r\nBcc: attacker@evil.test",
            html=html,
            text="Grüße\n" + "a" * 300,
            preheader="Neu im Laden",
            unsubscribe_url="https://tea.test/u/unsubscribe?t=abc",
        )
    )
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Für dich Bcc: attacker@evil.test", "no header injection"
    assert parsed["Bcc"] is None
    assert parsed["Message-ID"] == message_id
    assert parsed["List-Unsubscribe"] == "<https://tea.test/u/unsubscribe?t=abc>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text_part, html_part = parsed.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert "a" * 300 in text_part.get_content()
    body = html_part.get_content()
    assert 'style="color: red;"' in body, "CSS inlined"
    assert "<style>" not in body
    assert body.index("Neu im Laden") < body.index("Grüße"), "preheader first"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "SMTP line limit"


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    delays = [backoff(n, base=10, cap=1000) for n in range(1, 8)]
    assert 5 <= delays[0] <= 10
    assert 320 <= delays[6] <= 640
    assert backoff(1, base=10, cap=1000, after=120) >= 120
    assert max(backoff(30, base=10, cap=60) for _ in range(50)) <= 60


def test_templates_dir_is_found_from_a_checkout() -> None:
    assert (default_templates_dir() / "email" / "_layout.html").is_file()
    assert isinstance(default_templates_dir(), Path)
    assert time.time() > 0


def test_tokens_with_foreign_characters_are_refused_not_crashed() -> None:
    signer = LinkSigner("s", "https://shop.test")
    for junk in ("»\x9b.ñ", "é.é", ".", "a.", "\x00.\x00"):
        with pytest.raises(InvalidToken):
            signer.verify("unsubscribe", junk)


# -- CSS inlined once per page structure ------------------------------------------------------


class _Document(HTMLParser):
    """A page as the sequence of what a browser reads (escaping style aside)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[object, ...]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, tuple(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        self.events.append(("text", data))


def same_document(a: str, b: str) -> bool:
    return _Document(a).events == _Document(b).events


def _shipped_page(renderer: Renderer, locale: str, first_name: str, titles: list[str]) -> Page:
    shipped = load_shipped(default_templates_dir())
    template = shipped[("email", "recommended_for_you", locale)]
    items = [
        {"item_id": f"i{n}", "title": title, "price": 3.5 + n, "currency": "EUR", "source": "als",
         "url": f"https://s.t/c?t={n}&x=\"1\"", "raw_url": "https://s.t", "image_url": f"https://s.t/{n}.jpg"}
        for n, title in enumerate(titles)
    ]  # fmt: skip
    context = {
        "user": {"first_name": first_name},
        "items": items,
        "item": items[0],
        "links": {"unsubscribe": "https://s.t/u?t=a", "preferences": "https://s.t/p?t=b"},
        "shop": {"name": "Tea & Co", "url": "https://s.t"},
        "campaign": None,
        "currency": "EUR",
        "locale": locale,
    }
    return renderer.render_page("html", template.parts["html"], context)


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_page_inlined_by_its_structure_equals_the_page_inlined_whole(locale: str) -> None:
    renderer = Renderer(default_templates_dir())
    pages = [
        _shipped_page(renderer, locale, "Ana", ["Green <b>tea</b>", "Mug & saucer", "Kettle"]),
        _shipped_page(renderer, locale, "李雷", ["茶壶", 'Honey "raw"', "Jam"]),
    ]
    assert pages[0].skeleton == pages[1].skeleton, "same items count: one structure"
    assert pages[0].values != pages[1].values
    for page in pages:
        by_structure = inline_css(page)
        assert same_document(by_structure, inline_css(page.html)), "the same page either way"
        assert all(value in by_structure for value in page.values), "each recipient's own values"
        assert 'class="card" style="' in by_structure
    assert "Green &lt;b&gt;tea&lt;/b&gt;" in inline_css(pages[0]), "values stay escaped"
    other = _shipped_page(renderer, locale, "Ana", ["One item only"])
    assert other.skeleton != pages[0].skeleton
    assert same_document(inline_css(other), inline_css(other.html))


@pytest.mark.parametrize(
    ("source", "context", "styled"),
    [
        # a value in a class attribute decides which rule applies
        ('<style>.sale { color: red }</style><p class="{{ kind }}">x</p>', {"kind": "sale"}, "color: red"),
        # a selector that reads an attribute holding a value
        ('<style>a[href^="https"] { color: blue }</style><a href="{{ url }}">x</a>',
         {"url": "https://s.t"}, "color: blue"),
        # markup printed with |safe is structure, styled like the rest
        ('<style>.sale { color: green }</style><div>{{ blurb|safe }}</div>',
         {"blurb": '<span class="sale">-20%</span>'}, "color: green"),
        # a value inside the stylesheet itself
        ("<style>p { color: {{ colour }} }</style><p>x</p>", {"colour": "teal"}, "color: teal"),
    ],
)  # fmt: skip
def test_values_the_css_can_see_are_inlined_with_the_whole_page(
    source: str, context: dict[str, str], styled: str
) -> None:
    page = Renderer().render_page("html", source, context)
    inlined = inline_css(page)
    assert styled in inlined
    assert same_document(inlined, inline_css(page.html))


def _decoded(encoded: bytes) -> str:
    lines = encoded.split(b"\r\n")
    # at most 76 characters; binascii.b2a_qp itself writes up to 78 where it encodes a space or
    # tab before a line break (it checks the length before it encodes them)
    assert all(len(line) <= 76 or (len(line) <= 78 and line.endswith((b"=20", b"=09"))) for line in lines)
    assert not any(line.endswith((b" ", b"\t")) for line in lines), "no trailing whitespace to lose"
    return binascii.a2b_qp(encoded).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_page_encoded_by_its_structure_decodes_to_the_page_encoded_whole(locale: str) -> None:
    renderer = Renderer(default_templates_dir())
    titles = ["Green <b>tea</b>  ", "x" * 200 + "=", "茶壶 " * 40, "Tab\tand\nnewline ", ""]
    page = _shipped_page(renderer, locale, "李 Ana ", titles)
    for preheader, pixel in [("", None), ("Für <dich> ", 'https://s.t/o?t=1&a="2"')]:
        filled = with_open_pixel(with_preheader(inline_css(page), preheader), pixel)
        whole = with_open_pixel(with_preheader(inline_css(page.html), preheader), pixel)
        for _ in range(2):  # the second time from the cached encoding
            decoded = _decoded(html_body(page, preheader, pixel))
            assert decoded == filled.replace("\r\n", "\n")
            assert same_document(decoded, whole)
    assert "Für &lt;dich&gt;" in _decoded(html_body(page, "Für <dich> ")), "the preheader is escaped"
    carrying = Page(page.skeleton, (*page.values[:-1], "a\x00b"))  # the separator inside a value
    assert "a\x00b" in _decoded(html_body(carrying))


def test_values_of_any_shape_keep_quoted_printable_lines_valid() -> None:
    renderer = Renderer(default_templates_dir())
    page = _shipped_page(renderer, "en", "Ana", ["a", "b", "c"])
    rng = random.Random(7)
    alphabet = ["a", " ", "\t", "=", "é", "茶", "\n", ".", "x" * 70]
    for _ in range(300):
        values = tuple(
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))) for _ in page.values
        )
        shaped = Page(page.skeleton, values)
        expected = with_open_pixel(with_preheader(inline_css(shaped), "p "), "https://s.t/o")
        assert _decoded(html_body(shaped, "p ", "https://s.t/o")) == expected.replace("\r\n", "\n")
