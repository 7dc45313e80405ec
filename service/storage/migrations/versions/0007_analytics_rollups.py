"""analytics: daily roll-ups of events, filled from the events stored so far; campaigns' final results

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.storage import rollups

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _count(name: str, kind: type[sa.types.TypeEngine] = sa.Integer) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, kind(), nullable=False)


def _item_measures() -> list[sa.Column]:  # type: ignore[type-arg]
    counts = [_count(name) for name in ("views", "clicks", "carts", "purchases")]
    return [*counts, _count("units", sa.Float), _count("revenue", sa.Float)]


def upgrade() -> None:
    op.add_column("events", sa.Column("recommendation_id", sa.String(length=128), nullable=True))
    op.add_column("campaigns", sa.Column("final_results", sa.JSON(), nullable=True))
    op.create_table(
        "item_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        *_item_measures(),
        sa.PrimaryKeyConstraint("day", "item_id", "channel", name=op.f("pk_item_daily")),
    )
    op.create_index(op.f("ix_item_daily_item_id_day"), "item_daily", ["item_id", "day"])
    op.create_table(
        "item_weekly",
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        *_item_measures(),
        sa.PrimaryKeyConstraint("week", "item_id", "channel", name=op.f("pk_item_weekly")),
    )
    op.create_table(
        "channel_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        _count("events"),
        _count("purchases"),
        _count("revenue", sa.Float),
        sa.PrimaryKeyConstraint("day", "channel", name=op.f("pk_channel_daily")),
    )
    op.create_table(
        "user_channel_latest",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("last_seen_day", sa.Date(), nullable=False),
        sa.Column("last_purchase_day", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "channel", name=op.f("pk_user_channel_latest")),
    )
    op.create_table(
        "user_channel_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        _count("events"),
        _count("purchases"),
        _count("revenue", sa.Float),
        sa.PrimaryKeyConstraint("day", "channel", "user_id", name=op.f("pk_user_channel_daily")),
    )
    op.create_table(
        "recommendation_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        _count("served", sa.BigInteger),
        _count("clicked", sa.BigInteger),
        sa.PrimaryKeyConstraint("day", "model_version", name=op.f("pk_recommendation_daily")),
    )
    bind = op.get_bind()
    for sql in rollups.statements(bind.dialect.name, "events"):
        bind.exec_driver_sql(sql)


def downgrade() -> None:
    op.drop_table("recommendation_daily")
    op.drop_table("user_channel_daily")
    op.drop_table("user_channel_latest")
    op.drop_table("channel_daily")
    op.drop_table("item_weekly")
    op.drop_index(op.f("ix_item_daily_item_id_day"), table_name="item_daily")
    op.drop_table("item_daily")
    op.drop_column("events", "recommendation_id")
    op.drop_column("campaigns", "final_results")
