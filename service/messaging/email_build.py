"""Assembling one email: `multipart/alternative` (text, then HTML), CSS inlined, RFC 8058 headers.

The standard library's `EmailMessage` spends 5-6 ms a message on policy machinery, more than
rendering and sending together, so this builds the one shape shopcast sends directly: headers
folded and encoded with `email.header` / `email.utils`, bodies quoted-printable (`binascii`),
CRLF line ends. The output parses back with the standard library (tests check it).
"""

from __future__ import annotations

import binascii
import functools
import re
import secrets
import time
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from service.messaging.inlining import inline_css
from service.messaging.rendering import Page

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
    if not preheader:
        return html
    block = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f"{preheader}{'&#847;&zwnj;&nbsp;' * 30}</div>"
    )
    match = _BODY_OPEN.search(html)
    return html[: match.end()] + block + html[match.end() :] if match else block + html


_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)


def with_open_pixel(html: str, url: str | None) -> str:
    if not url:
        return html
    escaped = url.replace("&", "&amp;").replace('"', "&quot;")
    pixel = f'<img src="{escaped}" width="1" height="1" alt="" style="display:block;border:0">'
    match = _BODY_CLOSE.search(html)
    return html[: match.start()] + pixel + html[match.start() :] if match else html + pixel


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
            _qp(with_open_pixel(with_preheader(inline_css(email.html), email.preheader), email.open_url)),
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )
    return msg_id, head + body
