"""Email over SMTP (aiosmtplib), with a pool of connections of its own, and the file outbox.

`SHOPCAST_SMTP_URL` = `smtp://user:pass@host:587?starttls=1&pool=8&timeout=30` (`smtps://` for
implicit TLS; `starttls=0` to refuse STARTTLS, `verify=0` to skip certificate checks on a
trusted network). Each envelope is sent as MAIL, RCPT, DATA on a pooled connection, so where
a failure happened says what it means: refused before DATA, or DATA answered 4xx/5xx, is
definite (retry or fail by the code); a connection lost while DATA was waiting for its answer
may have been accepted (`Unknown`). 421 (the server closing) and 4xx are transient.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from service.messaging.channels.base import Envelope, Failed, Outcome, Retry, Sent, Unknown


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None  # None: when the server offers it
    validate_certs: bool = True
    pool_size: int = 8
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SHOPCAST_SMTP_URL must look like smtp://user:pass@host:587?starttls=1")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}

        def flag(name: str) -> bool | None:
            return None if name not in query else query[name].lower() in ("1", "true", "yes")

        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit,
            start_tls=False if implicit else flag("starttls"),
            validate_certs=flag("verify") is not False,
            pool_size=max(1, int(query.get("pool", 8))),
            timeout=float(query.get("timeout", 30)),
        )


HARD_BOUNCE_CODES = (550, 551, 553)


def _by_code(code: int, message: str, stage: str) -> Outcome:
    """4xx: retry; 5xx: failed, and a hard bounce when RCPT says the mailbox does not exist (5.1.x)."""
    text = f"SMTP {code} at {stage}: {message[:200]}"
    if code < 500:
        return Retry(text)
    bounced = stage == "RCPT" and code in HARD_BOUNCE_CODES and "5.1." in message
    return Failed(text, bounced=bounced)


class SmtpChannel:
    name = "email"
    resend_safe = False

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(config.pool_size)
        self._all: set[aiosmtplib.SMTP] = set()

    def _new_client(self) -> aiosmtplib.SMTP:
        c = self.config
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password,
            use_tls=c.use_tls,
            start_tls=c.start_tls,
            validate_certs=c.validate_certs,
            timeout=c.timeout,
        )

    async def send(self, envelope: Envelope) -> Outcome:
        sender, recipient = envelope.payload["sender"], envelope.payload["to"]
        raw = envelope.payload["raw"].encode()
        async with self._slots:
            client = self._idle.get_nowait() if not self._idle.empty() else None
            for _ in range(2):
                reused = client is not None and client.is_connected
                if client is None or not reused:
                    if client is not None:
                        await self._drop(client)
                    connected = await self._connect()
                    if not isinstance(connected, aiosmtplib.SMTP):
                        return connected
                    client = connected
                outcome, keep = await self._transaction(client, sender, recipient, raw, reused=reused)
                if outcome is None:  # an idle connection the server had closed: once more, fresh
                    await self._drop(client)
                    client = None
                    continue
                if keep:
                    self._idle.put_nowait(client)
                else:
                    await self._drop(client)
                return outcome
        return Retry("SMTP connection closed twice before MAIL")

    async def _connect(self) -> aiosmtplib.SMTP | Retry | Failed:
        client = self._new_client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            return Failed(f"SMTP login refused ({exc.code})")
        except aiosmtplib.SMTPResponseException as exc:
            return _by_code(exc.code, exc.message, "connect")  # type: ignore[return-value]
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Retry(f"SMTP connect failed: {type(exc).__name__}")
        self._all.add(client)
        return client

    async def _transaction(
        self, client: aiosmtplib.SMTP, sender: str, recipient: str, raw: bytes, *, reused: bool
    ) -> tuple[Outcome | None, bool]:
        """(outcome, keep the connection); outcome None: a reused connection was found closed."""
        stage = "MAIL"
        try:
            await client.mail(sender)
            stage = "RCPT"
            await client.rcpt(recipient)
            stage = "DATA"
            response = await client.data(raw)
        except aiosmtplib.SMTPServerDisconnected:
            if stage == "MAIL" and reused:
                return None, False
            if stage == "DATA":
                return Unknown("SMTP connection lost while DATA was answered; the server may have it"), False
            return Retry(f"SMTP connection lost at {stage}"), False
        except aiosmtplib.SMTPResponseException as exc:
            keep = exc.code != 421
            if keep:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.rset()
            return _by_code(exc.code, exc.message, stage), keep
        except (aiosmtplib.SMTPTimeoutError, TimeoutError, OSError, aiosmtplib.SMTPException) as exc:
            if stage == "DATA":
                return Unknown(
                    f"SMTP {type(exc).__name__} while DATA was answered; the server may have it"
                ), False
            return Retry(f"SMTP {type(exc).__name__} at {stage}"), False
        return Sent(envelope_id(response.message)), True

    async def _drop(self, client: aiosmtplib.SMTP) -> None:
        self._all.discard(client)
        with contextlib.suppress(Exception):
            client.close()

    async def close(self) -> None:
        for client in list(self._all):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2)
            await self._drop(client)


def envelope_id(reply: str) -> str | None:
    """The queue id a server put in its 250 reply, e.g. `2.0.0 Ok: queued as 4F3A1`, or None."""
    text = reply.strip()
    return text[-120:] if text else None


class OutboxChannel:
    """The embedded default: each email is written to `<data_dir>/outbox/<key>.eml`, atomically."""

    name = "email"
    resend_safe = True  # the file is named by the delivery key: writing it again changes nothing

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, envelope: Envelope) -> Outcome:
        return await asyncio.to_thread(self._write, envelope)

    def _write(self, envelope: Envelope) -> Outcome:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in envelope.key) + ".eml"
        target = self.directory / name
        staging = target.with_suffix(f".tmp{os.getpid()}")
        try:
            staging.write_bytes(envelope.payload["raw"].encode())
            os.replace(staging, target)
        except OSError as exc:
            return Retry(f"outbox not writable: {exc.strerror}")
        return Sent(str(target))

    async def close(self) -> None:
        return None
