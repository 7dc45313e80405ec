"""`shopcast serve`: migrate, then run the API under Granian."""

from __future__ import annotations

import os
import shutil

import click

from service.cli.common import prepare_database, say, settings_from_env
from service.ops.logs import granian_log_config


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (migrations are applied first)."""
    from granian.constants import Interfaces
    from granian.server import Server

    settings = settings_from_env()
    prepare_database(settings)
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = settings.data_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    settings.resolved_secret_key()  # generate it once, before workers race to
    say(f"shopcast serving on http://{host}:{port} (OpenAPI at /schema, {workers} worker(s))")
    Server(
        "service.app:create_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        log_access=False,
        log_dictconfig=granian_log_config(settings.log),
    ).serve()
