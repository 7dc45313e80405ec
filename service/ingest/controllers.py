"""`POST /v1/events` (one event or an array) and `POST /v1/events/bulk` (NDJSON of any size)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody, Parameter

from service.context import Ctx
from service.errors import InvalidInput
from service.ingest.batch import check_batch_size, prepare_batch, write_batch
from service.ingest.kinds import EventKind
from service.ingest.pipeline import IngestInterrupted, IngestReport, run_ingest
from service.ingest.sources import decode_ndjson, ndjson_lines
from service.records import EventIn


@dataclass
class NdjsonOperation(Operation):
    """Documents the bulk body: NDJSON, one event record a line (Litestar cannot infer it)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="One event record (as in POST /v1/events) a line; gzip allowed",
            content={"application/x-ndjson": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))},
        )


class EventsAccepted(msgspec.Struct):
    accepted: int
    duplicates: int
    unknown_items: int


async def _body_chunks(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", "gzip"):
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}; send identity or gzip")
    inflater = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
    async for chunk in request.stream():
        if inflater is None:
            yield chunk
            continue
        try:
            yield inflater.decompress(chunk)
        except zlib.error as exc:
            raise InvalidInput(f"body is not valid gzip: {exc}") from None


class EventsController(Controller):
    path = "/events"
    tags = ["events"]
    opt = {"scopes": ("events:write",)}

    @post("/", operation_id="ingestEvents", status_code=200)
    async def ingest(self, data: JSONBody[EventIn | list[EventIn]], ctx: Ctx) -> EventsAccepted:
        """Store one event or an array of them, all or nothing.

        Repeats of a stored `event_id` are counted as duplicates; events for items not (yet) in
        the catalog are stored and counted as `unknown_items`.
        """
        records = data if isinstance(data, list) else [data]
        api = ctx.settings.api
        check_batch_size(len(records), api.max_batch_records, "Send more through /v1/events/bulk.")
        kind = EventKind(channels=api.channels)
        rows = prepare_batch(kind, records, indexed=isinstance(data, list))
        counts = await write_batch(ctx.engine, kind, rows)
        await ctx.serving.after_events()
        return EventsAccepted(counts.accepted, counts.duplicates, counts.unknown_items)

    @post(
        "/bulk",
        operation_id="ingestEventsBulk",
        status_code=200,
        request_max_body_size=None,
        operation_class=NdjsonOperation,
    )
    async def bulk(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        atomic: Annotated[
            bool, Parameter(description="all lines or none: any rejected line stores nothing")
        ] = False,
    ) -> Response[IngestReport]:
        """Stream NDJSON events (one per line, any size, gzip allowed) and report every line.

        Without `atomic`, lines are committed in batches: the report lists each rejected line
        with its field and reason. A 503 carries the report up to the last committed line.
        """
        api = ctx.settings.api
        source = decode_ndjson(ndjson_lines(_body_chunks(request), api.max_line_bytes), EventIn)
        try:
            report = await run_ingest(
                ctx.engine,
                EventKind(channels=api.channels),
                source,
                atomic=atomic,
                batch_rows=api.bulk_batch_rows,
            )
        except IngestInterrupted as interrupted:
            return Response(interrupted.report, status_code=503, headers={"Retry-After": "5"})
        stored_nothing = not report.applied or report.accepted + report.duplicates == 0
        await ctx.serving.after_events()
        return Response(report, status_code=422 if report.rejected and stored_nothing else 200)
