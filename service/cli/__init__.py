"""The `shopcast` command. Results go to standard output; progress and messages to standard error."""

from __future__ import annotations

import click

from service.cli.campaign import campaign
from service.cli.db import db
from service.cli.demo import demo
from service.cli.importing import import_
from service.cli.keys import keys
from service.cli.recommend import recommend
from service.cli.serve import serve
from service.cli.staff import staff
from service.cli.training import evaluate_command, models, train_command
from service.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shopcast")
def cli() -> None:
    """shopcast: recommendations and personalized marketing for multi-channel shops."""


for command in (
    serve,
    worker,
    db,
    keys,
    import_,
    staff,
    train_command,
    evaluate_command,
    models,
    recommend,
    demo,
    campaign,
):
    cli.add_command(command)


def main() -> None:
    cli()
