"""`shopcast serve` as users run it, fuzzed through its whole OpenAPI document: no input may give a 5xx.

One live server per database; schemathesis generates valid and invalid requests for every
operation, with an admin key so that requests reach the handlers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import SECRET, free_port, wait_until_ready

SHOPCAST = str(Path(sys.executable).with_name("shopcast"))


@schemathesis.serializer("application/x-ndjson")
def ndjson_body(_ctx: object, value: object) -> bytes:
    """The bulk body is text; send generated strings (and anything else) as bytes."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


class LiveServer:
    def __init__(self, base_url: str, key: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.key = key
        self.process = process
        self.log = log


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    database_url: str = request.getfixturevalue(f"{request.param}_url")
    data_dir = tmp_path_factory.mktemp("serve")
    env = {
        **os.environ,
        "SHOPCAST_DATABASE_URL": database_url,
        "SHOPCAST_DATA_DIR": str(data_dir),
        "SHOPCAST_SECRET_KEY": SECRET,
        "SHOPCAST_RATE_LIMIT_PER_MINUTE": "0",
    }
    created = subprocess.run(
        [SHOPCAST, "keys", "create", "--name", "fuzz", "--scopes", "admin"],
        env=env,
        capture_output=True,
        check=True,
        text=True,
    )
    key = created.stdout.strip()
    port = free_port()
    log = data_dir / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [SHOPCAST, "serve", "--port", str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready(base_url, process, log)
    yield LiveServer(base_url, key, process, log)
    process.terminate()
    process.wait(timeout=10)


def test_serve_answers_health_metrics_and_schema(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.base_url) as client:
        assert client.get("/health/live").json() == {"status": "ok"}
        assert client.get("/health/ready").json()["database"] == "ok"
        client.post(
            "/v1/events",
            json={"user_id": "u1", "item_id": "i1", "event": "view", "timestamp": 1_700_000_000},
            headers={"Authorization": f"Bearer {live_server.key}"},
        ).raise_for_status()
        metrics = client.get("/metrics").text
        assert 'path="/v1/events"' in metrics
        assert "/v1/users/" not in metrics.replace("{user_id}", ""), "metrics carry templates, not ids"
        assert client.get("/schema/openapi.json").json()["info"]["title"] == "shopcast"
    logged = live_server.log.read_text()
    assert '"route":"/v1/events"' in logged
    assert live_server.key not in logged


def operations(base_url: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_causes_a_server_error(live_server: LiveServer, mode: GenerationMode) -> None:
    """Every operation, with generated valid (positive) and invalid (negative) requests."""
    auth = {"Authorization": f"Bearer {live_server.key}"}
    found = operations(live_server.base_url)
    assert len(found) >= 10

    for operation in found:
        has_inputs = any((operation.body, operation.query, operation.path_parameters))
        if mode is GenerationMode.NEGATIVE and not has_inputs:
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=int(os.environ.get("SHOPCAST_FUZZ_EXAMPLES", "40")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=auth,
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )

        try:
            check()
        except Exception:
            print(live_server.log.read_text()[-5_000:])  # the server's side of the failure
            raise
