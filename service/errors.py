"""shopcast's exceptions, and the one place that maps them to HTTP responses.

    ShopcastError                 500
    ├── InvalidInput              422  (field-level problems, `errors`)
    ├── NotFound                  404
    ├── Conflict                  409
    ├── PayloadTooLarge           413
    ├── Unauthorized              401
    ├── Forbidden                 403
    ├── RateLimited               429  (+ Retry-After)
    └── ServiceUnavailable        503  (+ Retry-After)

The data layer raises these without knowing about HTTP; `exception_handlers` renders them in
Litestar's own error shape: `{"status_code", "detail", "extra": [{"key", "message"}]}`.
"""

from __future__ import annotations

import logging
import re
import traceback
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)


class FieldProblem(Exception):
    """One field of one record is wrong: `key` names it (`timestamp`, `items[3].price`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


_AT = re.compile(r"^(?P<message>.*?)(?: - at (?:`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"(?:missing required field|unknown field) `(?P<field>[^`]+)`")


def problem_from_msgspec(error: msgspec.MsgspecError) -> FieldProblem:
    """`Expected str - at $.user_id` becomes FieldProblem("user_id", "Expected str")."""
    text = str(error)
    match = _AT.match(text)
    message = match.group("message") if match else text
    path = (match.group("path") or "") if match else ""
    path = path.lstrip(".")
    named = _NAMED.search(message)
    if named:
        path = f"{path}.{named.group('field')}" if path else named.group("field")
    if isinstance(error, msgspec.DecodeError):
        message = f"malformed JSON: {message}"
    return FieldProblem(path.replace(".[", "[") or "record", message)


class ShopcastError(Exception):
    status_code: ClassVar[int] = 500
    headers: dict[str, str]

    def __init__(self, detail: str, *, extra: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers = {}


class InvalidInput(ShopcastError):
    status_code = 422

    @classmethod
    def from_problems(cls, detail: str, problems: list[FieldProblem]) -> InvalidInput:
        return cls(detail, extra=[{"key": p.key, "message": p.message} for p in problems])


class BadParameter(ShopcastError):
    """A query or path parameter outside what the route accepts (400, naming it)."""

    status_code = 400

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"invalid {name}: {message}", extra=[{"key": name, "message": message}])


class NotFound(ShopcastError):
    status_code = 404


class Conflict(ShopcastError):
    status_code = 409


class PayloadTooLarge(ShopcastError):
    status_code = 413


class Unauthorized(ShopcastError):
    status_code = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": 'Bearer realm="shopcast"'}


class Forbidden(ShopcastError):
    status_code = 403


class RateLimited(ShopcastError):
    status_code = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(ShopcastError):
    status_code = 503

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


def _render(status: int, detail: str, extra: Any, headers: dict[str, str]) -> Response[Any]:
    body: dict[str, Any] = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, headers=headers)


def handle_shopcast_error(_: Request[Any, Any, Any], exc: ShopcastError) -> Response[Any]:
    if exc.status_code >= 500:
        log.error("request failed: %s", exc.detail)
    return _render(exc.status_code, exc.detail, exc.extra, exc.headers)


def handle_database_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Database unreachable or overloaded: 503, never a stack trace (and never its parameters)."""
    log.error("database error: %s", type(getattr(exc, "orig", exc)).__name__)
    return _render(503, "database unavailable, try again shortly", None, {"Retry-After": "5"})


def handle_data_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A value validation let through but the database refused: the client's input, so 422."""
    log.warning("database refused a value: %s", type(getattr(exc, "orig", exc)).__name__)
    return _render(422, "a value was refused by the database (invalid characters or range)", None, {})


def handle_driver_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    """Any other driver error: a value the database refused (SQLSTATE class 22) is the client's,
    422; the rest (deadlock, shutdown, …) are the database's, 503."""
    if str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
        return handle_data_error(request, exc)
    return handle_database_error(request, exc)


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list | dict) and exc.extra else None
    cause = exc.__cause__
    if isinstance(exc, ValidationException) and isinstance(cause, msgspec.ValidationError):
        # Litestar drops the path inside arrays (`data[3].price` becomes `data`); keep it.
        problem = problem_from_msgspec(cause)
        if problem.key.startswith("data"):
            key = problem.key.removeprefix("data").lstrip(".") or "body"
            extra = [{"key": key, "message": problem.message, "source": "body"}]
    return _render(exc.status_code, exc.detail, extra, dict(exc.headers or {}))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: logged with its type and where it happened (never its message: it may hold data)."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    handler = request.scope.get("route_handler")
    log.error("unexpected %s in %s: %s", type(exc).__name__, getattr(handler, "handler_name", "?"), where)
    return _render(500, "Internal Server Error", None, {})


DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    ConnectionError,
)

exception_handlers: ExceptionHandlersMap = {
    ShopcastError: handle_shopcast_error,
    **dict.fromkeys(DATABASE_ERRORS, handle_database_error),  # asyncpg raises ConnectionError unwrapped
    DataError: handle_data_error,
    DBAPIError: handle_driver_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
