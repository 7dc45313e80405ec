"""Record sources: NDJSON byte streams (HTTP bodies), and CSV, NDJSON and Parquet files.

Each source yields `(line, record)` where the record is a decoded msgspec struct of the
kind's type, or a `FieldProblem` saying what is wrong with that line.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, cast

import msgspec

from service.errors import FieldProblem, problem_from_msgspec

LIST_FIELDS = frozenset({"tags", "push_tokens"})
FORMATS = ("csv", "ndjson", "parquet")


async def ndjson_lines(
    chunks: AsyncIterable[bytes], max_line_bytes: int
) -> AsyncIterator[tuple[int, bytes | FieldProblem]]:
    """Split a byte stream into numbered lines without holding more than one line in memory."""
    buffer = bytearray()
    line_no = 0
    overlong = False
    async for chunk in chunks:
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > max_line_bytes:
                    overlong = True
                    buffer.clear()
                break
            line_no += 1
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if overlong:
                overlong = False
                yield line_no, FieldProblem("line", f"longer than {max_line_bytes} bytes")
            elif len(line) > max_line_bytes:
                yield line_no, FieldProblem("line", f"longer than {max_line_bytes} bytes")
            elif line.strip():
                yield line_no, line
    if overlong:
        yield line_no + 1, FieldProblem("line", f"longer than {max_line_bytes} bytes")
    elif buffer.strip():
        yield line_no + 1, bytes(buffer)


async def decode_ndjson(
    lines: AsyncIterable[tuple[int, bytes | FieldProblem]], record_type: type[Any]
) -> AsyncIterator[tuple[int, Any]]:
    decoder = msgspec.json.Decoder(record_type)
    async for line_no, raw in lines:
        if isinstance(raw, FieldProblem):
            yield line_no, raw
            continue
        try:
            yield line_no, decoder.decode(raw)
        except msgspec.MsgspecError as error:
            yield line_no, problem_from_msgspec(error)


def _unflatten(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells to a record: empty cells left out, `a.b` columns nested, `x|y` lists split."""
    record: dict[str, Any] = {}
    for column, value in row.items():
        if value is None or value == "" or column is None:
            continue
        if _has_surrogate(value):
            raise FieldProblem(column, "not valid UTF-8")
        if column in LIST_FIELDS and isinstance(value, str):
            value = [part.strip() for part in value.split("|") if part.strip()]
        head, _, rest = column.partition(".")
        if rest:
            record.setdefault(head, {})[rest] = value
        else:
            record[column] = value
    return record


def _has_surrogate(value: Any) -> bool:
    """True for text decoded with `surrogateescape` from bytes that were not UTF-8."""
    if not isinstance(value, str) or value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def convert_rows(
    rows: Iterable[tuple[int, dict[str, Any] | FieldProblem]], record_type: type[Any]
) -> Iterator[tuple[int, Any]]:
    """Loosely typed rows (CSV strings, Parquet values) to records, or a problem per row."""
    for line_no, row in rows:
        if isinstance(row, FieldProblem):
            yield line_no, row
            continue
        try:
            yield line_no, msgspec.convert(_unflatten(row), record_type, strict=False)
        except FieldProblem as problem:
            yield line_no, problem
        except msgspec.ValidationError as error:
            yield line_no, problem_from_msgspec(error)


def _csv_rows(handle: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | FieldProblem]]:
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.DictReader(text)
    try:
        for row in reader:
            if None in row:
                yield reader.line_num, FieldProblem("row", "more cells than header columns")
            else:
                yield reader.line_num, row
    except csv.Error as error:
        yield reader.line_num, FieldProblem("row", f"malformed CSV: {error}")
    finally:
        text.detach()  # the caller owns and closes the file


def _parquet_rows(handle: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = handle if handle.seekable() else pa.BufferReader(handle.read())
    row_no = 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, {k: _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _ndjson_rows(handle: IO[bytes], record_type: type[Any]) -> Iterator[tuple[int, Any]]:
    decoder = msgspec.json.Decoder(record_type)
    for line_no, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            yield line_no, decoder.decode(raw)
        except msgspec.MsgspecError as error:
            yield line_no, problem_from_msgspec(error)


def detect_format(path: str, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    name = path.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".ndjson", ".jsonl", ".json")):
        return "ndjson"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"cannot tell the format of {path!r}: use .csv, .ndjson/.jsonl or .parquet, or --format")


@dataclass
class InputFile:
    """An open input: `handle` gives decompressed bytes, `position()` the raw bytes read so far."""

    handle: IO[bytes]
    position: Callable[[], int]
    size: int | None


@contextmanager
def open_input(path: str) -> Iterator[InputFile]:
    """The file (or stdin for `-`), decompressed when it is gzip."""
    with ExitStack() as stack:
        raw: IO[bytes] = sys.stdin.buffer if path == "-" else stack.enter_context(Path(path).open("rb"))
        size = None if path == "-" else Path(path).stat().st_size
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        handle = raw
        if head == b"\x1f\x8b":
            handle = cast(IO[bytes], stack.enter_context(gzip.GzipFile(fileobj=raw)))

        def position() -> int:
            try:
                return raw.tell()
            except (OSError, ValueError):
                return 0

        yield InputFile(handle, position, size)


def file_records(handle: IO[bytes], fmt: str, record_type: type[Any]) -> Iterator[tuple[int, Any]]:
    """Records from an open (decompressed) file in `fmt`."""
    if fmt == "ndjson":
        return _ndjson_rows(handle, record_type)
    if fmt == "csv":
        return convert_rows(_csv_rows(handle), record_type)
    if fmt == "parquet":
        return convert_rows(_parquet_rows(handle), record_type)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
