"""POST /v1/events and /v1/events/bulk on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json

import httpx
from sqlalchemy import func, select

from service.context import Context
from service.storage.tables import events

Client = httpx.AsyncClient


def event(n: int = 1, **fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "user_id": f"u{n % 7}",
        "item_id": f"i{n % 11}",
        "event": "view",
        "timestamp": 1_700_000_000 + n,
        "event_id": f"e{n}",
    }
    record.update(fields)
    return record


async def stored(ctx: Context) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


async def test_one_event_and_an_array_are_stored(client: Client, ctx: Context, auth) -> None:
    headers = await auth("events:write")
    one = await client.post("/v1/events", json=event(1, channel="web"), headers=headers)
    assert one.status_code == 200, one.text
    assert one.json() == {"accepted": 1, "duplicates": 0, "unknown_items": 1}
    many = await client.post("/v1/events", json=[event(n) for n in range(2, 12)], headers=headers)
    assert many.json()["accepted"] == 10
    assert await stored(ctx) == 11


async def test_repeated_event_ids_are_ignored_and_counted(client: Client, ctx: Context, auth) -> None:
    headers = await auth("events:write")
    await client.post("/v1/events", json=[event(1), event(2)], headers=headers)
    again = await client.post("/v1/events", json=[event(1), event(2), event(3), event(3)], headers=headers)
    assert again.json() == {"accepted": 1, "duplicates": 3, "unknown_items": 4}
    assert await stored(ctx) == 3


async def test_events_without_event_id_are_all_kept(client: Client, ctx: Context, auth) -> None:
    headers = await auth("events:write")
    record = event(1)
    del record["event_id"]
    response = await client.post("/v1/events", json=[record, record], headers=headers)
    assert response.json()["accepted"] == 2
    assert await stored(ctx) == 2


async def test_known_items_are_not_counted_unknown(client: Client, auth) -> None:
    headers = await auth("events:write,catalog:write")
    await client.put("/v1/items", json=[{"item_id": "i1", "title": "Tea"}], headers=headers)
    response = await client.post("/v1/events", json=[event(1), event(2)], headers=headers)
    assert response.json()["unknown_items"] == 1


async def test_iso_timestamps_with_and_without_offset(client: Client, ctx: Context, auth) -> None:
    headers = await auth("events:write")
    body = [
        event(1, timestamp="2024-03-01T10:00:00Z"),
        event(2, timestamp="2024-03-01T12:00:00+02:00"),
        event(3, timestamp="2024-03-01T10:00:00"),
        event(4, timestamp="1709287200"),
    ]
    assert (await client.post("/v1/events", json=body, headers=headers)).status_code == 200
    exported = await client.get("/v1/users/u1/export", headers=await auth("users:write"))
    assert exported.json()["events"][0]["timestamp"].startswith("2024-03-01T10:00:00")


async def test_a_bad_event_rejects_the_whole_array_naming_index_and_field(
    client: Client, ctx: Context, auth
) -> None:
    headers = await auth("events:write")
    body = [event(1), event(2, timestamp="yesterday"), event(3, channel="fax")]
    response = await client.post("/v1/events", json=body, headers=headers)
    assert response.status_code == 422
    problems = {p["key"]: p["message"] for p in response.json()["extra"]}
    assert set(problems) == {"[1].timestamp", "[2].channel"}
    assert "not ISO 8601" in problems["[1].timestamp"]
    assert "known: web, app, store, social" in problems["[2].channel"]
    assert await stored(ctx) == 0


async def test_type_errors_name_the_field(client: Client, auth) -> None:
    headers = await auth("events:write")
    cases = {
        "user_id": event(1, user_id=5),
        "event": event(1, event="teleport"),
        "quantity": event(1, quantity=-1),
        "price": event(1, price="cheap"),
    }
    for field, body in cases.items():
        response = await client.post("/v1/events", json=body, headers=headers)
        assert response.status_code == 400, (field, response.text)
        assert field in response.text, (field, response.text)
    missing = event(1)
    del missing["item_id"]
    response = await client.post("/v1/events", json=missing, headers=headers)
    assert response.status_code == 400
    assert "item_id" in response.text


async def test_future_and_millisecond_timestamps_are_refused(client: Client, auth) -> None:
    headers = await auth("events:write")
    millis = await client.post("/v1/events", json=event(1, timestamp=1_700_000_000_000), headers=headers)
    assert millis.status_code == 422
    assert "milliseconds" in millis.text
    future = await client.post("/v1/events", json=event(1, timestamp="2999-01-01T00:00:00Z"), headers=headers)
    assert future.status_code == 422
    assert "future" in future.text


async def test_too_many_events_in_one_request_is_413(client: Client, auth) -> None:
    headers = await auth("events:write")
    body = [event(n) for n in range(10_001)]
    response = await client.post("/v1/events", json=body, headers=headers)
    assert response.status_code == 413
    assert "/v1/events/bulk" in response.text


async def test_oversized_body_is_413(client: Client, auth) -> None:
    headers = await auth("events:write")
    body = json.dumps([event(1, session_id="s" * 100)] * 80_000).encode()
    assert len(body) > 10_000_000
    response = await client.post(
        "/v1/events", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def ndjson(records: list[object]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


async def test_bulk_reports_every_rejected_line_and_keeps_the_rest(
    client: Client, ctx: Context, auth
) -> None:
    headers = await auth("events:write")
    lines = [
        event(1),
        b'{"user_id": "u1", "item_id": ',  # malformed JSON
        event(3, event="teleport"),
        b"",  # blank lines are skipped, not errors
        event(4, quantity=-2),
        b'{"user_id": "u\xff", "item_id": "i", "event": "view", "timestamp": 1}',  # not UTF-8
        event(1),  # duplicate of line 1
        event(7, timestamp="not a time"),
        event(8),
    ]
    response = await client.post("/v1/events/bulk", content=ndjson(lines), headers=headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["accepted"], report["duplicates"], report["rejected"]) == (2, 1, 5)
    assert report["applied"] is True
    errors = {(e["line"], e["field"]) for e in report["errors"]}
    assert errors == {(2, "record"), (3, "event"), (5, "quantity"), (6, "record"), (8, "timestamp")}
    assert await stored(ctx) == 2


async def test_bulk_atomic_stores_nothing_when_a_line_is_bad(client: Client, ctx: Context, auth) -> None:
    headers = await auth("events:write")
    lines = [event(n) for n in range(1, 50)] + [event(50, channel="fax")]
    response = await client.post("/v1/events/bulk?atomic=true", content=ndjson(lines), headers=headers)
    assert response.status_code == 422
    report = response.json()
    assert report["applied"] is False
    assert report["accepted"] == 0
    assert report["errors"] == [{"line": 50, "field": "channel", "message": report["errors"][0]["message"]}]
    assert await stored(ctx) == 0
    good = await client.post("/v1/events/bulk?atomic=true", content=ndjson(lines[:-1]), headers=headers)
    assert good.status_code == 200
    assert good.json()["accepted"] == 49
    assert await stored(ctx) == 49


async def test_bulk_streams_many_batches_and_gzip(client: Client, ctx: Context, auth) -> None:
    headers = await auth("events:write")
    body = ndjson([event(n) for n in range(12_345)])
    response = await client.post(
        "/v1/events/bulk",
        content=gzip.compress(body),
        headers={**headers, "Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 12_345
    assert response.json()["committed_through_line"] == 12_345
    assert await stored(ctx) == 12_345


async def test_bulk_rejects_an_overlong_line_without_buffering_it(client: Client, auth) -> None:
    headers = await auth("events:write")
    body = ndjson([event(1), {"padding": "x" * 100_000}, event(3)])
    report = (await client.post("/v1/events/bulk", content=body, headers=headers)).json()
    assert report["accepted"] == 2
    assert report["errors"] == [{"line": 2, "field": "line", "message": "longer than 65536 bytes"}]


async def test_bulk_with_nothing_valid_is_422(client: Client, auth) -> None:
    headers = await auth("events:write")
    response = await client.post("/v1/events/bulk", content=b"nope\n", headers=headers)
    assert response.status_code == 422
    assert response.json()["rejected"] == 1


async def test_bulk_bad_gzip_is_a_client_error(client: Client, auth) -> None:
    headers = await auth("events:write")
    response = await client.post(
        "/v1/events/bulk", content=b"not gzip", headers={**headers, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 422
    assert "gzip" in response.text


async def test_blank_or_control_character_ids_are_refused(client: Client, auth) -> None:
    headers = await auth("events:write")
    for field, value in (
        ("user_id", "   "),
        ("item_id", "a\x01b"),
        ("event_id", "x\x00"),
        ("session_id", "\t"),
    ):
        response = await client.post("/v1/events", json=event(1, **{field: value}), headers=headers)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["extra"] == [
            {"key": field, "message": "must be printable characters, not blank"}
        ]
