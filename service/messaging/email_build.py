"""Assembling one email: `multipart/alternative` (text, then HTML), CSS inlined, RFC 8058 headers.

The standard library's `EmailMessage` spends 5-6 ms a message on policy machinery, more than
rendering and sending together, so this builds the one shape shopcast sends directly: headers
folded and encoded with `email.header` / `email.utils`, bodies quoted-printable (`binascii`),
CRLF line ends. The output parses back with the standard library (tests check it).
"""

from __future__ import annotations

import binascii
import functools
import html as html_text
import re
import secrets
import time
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from service.messaging.inlining import inline_css, inlined_skeleton
from service.messaging.rendering import VALUE_PATTERN, Page, placeholder

_BODY_OPEN = re.compile(r"<body[^>]*>", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"[\r\n\t\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Email:
    sender: str  # "Shop <shop@example.com>"
    to: str  # the address alone
    subject: str
    html: str | Page  # a Page has its CSS inlined once per structure (`inlining`)
    text: str
    preheader: str = ""
    unsubscribe_url: str | None = None
    open_url: str | None = None  # a 1x1 tracking image, added at the end of the body
    reply_to: str | None = None
    message_id_domain: str = "shopcast.local"
    extra_headers: tuple[tuple[str, str], ...] = ()


def one_line(value: str) -> str:
    """A header value with no line breaks or control characters (no header injection)."""
    return _LINE_BREAKS.sub(" ", value).strip()


def _header(value: str) -> str:
    value = one_line(value)
    return value if value.isascii() else Header(value, "utf-8").encode()


_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")


@functools.lru_cache(maxsize=64)
def _named_address(value: str) -> str:
    name, address = parseaddr(one_line(value))
    return formataddr((name, address), charset="utf-8") if name else address


def _address(value: str) -> str:
    """An address header value: a bare address as it is, "Name <address>" encoded as needed."""
    return value if _PLAIN_ADDRESS.match(value) else _named_address(value)


def _qp(text: str) -> bytes:
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode(), istext=True)
    return body.replace(b"\n", b"\r\n")


def with_preheader(html: str, preheader: str) -> str:
    """The preheader (inbox preview text) as a hidden block at the top of the body."""
    return _with_preheader_markup(html, html_text.escape(preheader, quote=False)) if preheader else html


def _with_preheader_markup(html: str, markup: str) -> str:
    block = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f"{markup}{'&#847;&zwnj;&nbsp;' * 30}</div>"
    )
    match = _BODY_OPEN.search(html)
    return html[: match.end()] + block + html[match.end() :] if match else block + html


_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)


def with_open_pixel(html: str, url: str | None) -> str:
    """A 1x1 tracking image at the end of the body."""
    return _with_pixel_markup(html, _attribute(url)) if url else html


def _attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;")


def _with_pixel_markup(html: str, src: str) -> str:
    pixel = f'<img src="{src}" width="1" height="1" alt="" style="display:block;border:0">'
    match = _BODY_CLOSE.search(html)
    return html[: match.start()] + pixel + html[match.start() :] if match else html + pixel


_SOFT_BREAK = b"=\r\n"  # a quoted-printable line end that decodes to nothing
_SEPARATOR = "\x00"  # between values encoded together; quoted-printable writes it "=00"
_MAX_LINE = 76  # quoted-printable line length, a soft break's "=" included (RFC 2045)


def html_body(html: str | Page, preheader: str = "", open_url: str | None = None) -> bytes:
    """The HTML part, CSS inlined, quoted-printable.

    A `Page` whose skeleton can be inlined once is also encoded once: its static pieces are
    cached quoted-printable, a recipient's values are encoded together in one call and split,
    and the pieces are joined with a soft line break wherever a line would grow too long.
    """
    if isinstance(html, Page):
        encoded = _encoded_skeleton(html.skeleton, len(html.values), bool(preheader), bool(open_url))
        if encoded is not None:
            values = (*html.values, html_text.escape(preheader, quote=False), _attribute(open_url or ""))
            texts = [values[index] for index in encoded.order]
            joined = _SEPARATOR.join(texts)
            if joined.count(_SEPARATOR) == len(texts) - 1:  # no value carries the separator itself
                return encoded.join(_qp(joined).split(b"=00") if texts else [])
    return _qp(with_open_pixel(with_preheader(inline_css(html), preheader), open_url))


# A piece of quoted-printable text: (bytes, length of its first line, of its last line, lines > 1)
_Piece = tuple[bytes, int, int, bool]


def _piece(data: bytes) -> _Piece:
    last_break = data.rfind(b"\r\n")
    if data[-1:] in (b" ", b"\t"):  # whitespace at a line's end would be lost: encode it
        encoded = b"=20" if data[-1:] == b" " else b"=09"
        too_long = len(data) - (last_break + 2 if last_break >= 0 else 0) + 2 >= _MAX_LINE
        data = data[:-1] + (_SOFT_BREAK + encoded if too_long else encoded)
        last_break = data.rfind(b"\r\n")
    if last_break < 0:
        return data, len(data), len(data), False
    return data, data.find(b"\r\n"), len(data) - last_break - 2, True


@dataclass(frozen=True)
class _EncodedSkeleton:
    statics: tuple[_Piece, ...]  # the text between values
    order: tuple[int, ...]  # which value goes after each static piece but the last

    def join(self, values: list[bytes]) -> bytes:
        """The statics and `values` (encoded) in turn, each line kept within the limit."""
        out = [self.statics[0][0]]
        column = self.statics[0][2]
        for value, static in zip(values, self.statics[1:], strict=True):
            if b"\r\n" in value or value[-1:] in (b" ", b"\t"):
                column = _place(out, _piece(value), column)
            else:  # most values: one short line
                if column + len(value) >= _MAX_LINE:
                    out.append(_SOFT_BREAK)
                    column = 0
                column += len(value)
                out.append(value)
            column = _place(out, static, column)
        return b"".join(out)


def _place(out: list[bytes], piece: _Piece, column: int) -> int:
    """Append `piece` after text ending at `column`, breaking the line first if it must; the new column."""
    data, head, tail, several_lines = piece
    if several_lines:
        if column + head > _MAX_LINE:
            out.append(_SOFT_BREAK)
        out.append(data)
        return tail
    if column + head >= _MAX_LINE:  # room left for a soft break's "=" later
        out.append(_SOFT_BREAK)
        column = 0
    out.append(data)
    return column + head


@functools.lru_cache(maxsize=256)
def _encoded_skeleton(skeleton: str, values: int, preheader: bool, pixel: bool) -> _EncodedSkeleton | None:
    """The inlined skeleton's static pieces encoded, or None when pages must be inlined whole."""
    inlined = inlined_skeleton(skeleton)
    if inlined is None:
        return None
    if preheader:  # the preheader and the pixel are the two values after the page's own
        inlined = _with_preheader_markup(inlined, placeholder(values))
    if pixel:
        inlined = _with_pixel_markup(inlined, placeholder(values + 1))
    pieces = VALUE_PATTERN.split(inlined)  # text, index, text, index, …, text
    return _EncodedSkeleton(
        tuple(_piece(_qp(text)) for text in pieces[0::2]),
        tuple(int(index) for index in pieces[1::2]),
    )


def message_id(domain: str) -> str:
    return f"<{int(time.time() * 1000)}.{secrets.token_hex(8)}@{domain}>"


def build(email: Email, *, msg_id: str | None = None) -> tuple[str, bytes]:
    """(Message-ID, the message as bytes ready for SMTP DATA)."""
    msg_id = msg_id or message_id(email.message_id_domain)
    boundary = f"=_shopcast_{secrets.token_hex(12)}"
    headers = [
        ("From", _address(email.sender)),
        ("To", _address(email.to)),
        ("Subject", _header(email.subject)),
        ("Date", formatdate(localtime=False, usegmt=True)),
        ("Message-ID", msg_id),
        ("MIME-Version", "1.0"),
    ]
    if email.reply_to:
        headers.append(("Reply-To", _address(email.reply_to)))
    if email.unsubscribe_url:
        headers.append(("List-Unsubscribe", f"<{one_line(email.unsubscribe_url)}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.extend((name, _header(value)) for name, value in email.extra_headers)
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    part_head = (
        'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    )
    marker = f"--{boundary}\r\n".encode()
    body = b"".join(
        [
            b"\r\n",
            marker,
            part_head.format("plain").encode(),
            _qp(email.text),
            b"\r\n",
            marker,
            part_head.format("html").encode(),
            # preheader and pixel carry their own styles: added after the stylesheet is inlined
            html_body(email.html, email.preheader, email.open_url),
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )
    return msg_id, head + body
