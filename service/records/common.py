"""What every record shares: identifiers, timestamps, and msgspec errors turned into field problems."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from service.errors import FieldProblem

ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
# Record ids are checked by `check_id` rather than a schema pattern: a regex per field per
# event costs more than the rest of decoding (see bench/ingest.py).
Id = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=128, description="1-128 printable characters, not blank"),
]
# PostgreSQL text cannot hold NUL; refuse it at the edge rather than fail in the database.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, msgspec.Meta(max_length=10_000, pattern=NO_NUL)]
ShortText = Annotated[str, msgspec.Meta(max_length=256, pattern=NO_NUL)]
Url = Annotated[str, msgspec.Meta(max_length=2_048, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")]
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
Timestamp = Annotated[
    str | float,
    msgspec.Meta(description="ISO 8601 (with or without offset; UTC assumed) or Unix seconds"),
]

# Accept at most this far in the future (clock skew), and nothing before 1990.
MAX_FUTURE = timedelta(days=1)
MIN_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)


def check_id(key: str, value: str | None) -> None:
    """Ids are printable (no control characters, which PostgreSQL text also refuses) and not blank."""
    if value is not None and not (value.isprintable() and value.strip()):
        raise FieldProblem(key, "must be printable characters, not blank")


def parse_timestamp(value: str | float, *, now: datetime | None = None) -> datetime:
    """ISO 8601 or Unix seconds to an aware UTC datetime; raises ValueError with the reason."""
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not math.isnan(seconds):
            return parse_timestamp(seconds, now=now)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise ValueError(f"not ISO 8601 or Unix seconds: {value[:40]!r}") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        if not math.isfinite(value):
            raise ValueError("not a finite number of seconds")
        if value > 1e11:
            raise ValueError("too large for Unix seconds (milliseconds? divide by 1000)")
        if value < 0:
            raise ValueError("before 1970")
        moment = datetime.fromtimestamp(value, tz=UTC)
    limit = (now or datetime.now(UTC)) + MAX_FUTURE
    if moment > limit:
        raise ValueError(f"{moment.isoformat()} is in the future")
    if moment < MIN_TIMESTAMP:
        raise ValueError(f"{moment.isoformat()} is before 1990")
    return moment
