"""campaigns: audiences, campaigns, their recipients, message events and suppressions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _stamp(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("campaign_id", BigId, nullable=True))
    op.create_index(op.f("ix_deliveries_campaign_id_status"), "deliveries", ["campaign_id", "status"])
    op.create_table(
        "audiences",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audiences")),
        sa.UniqueConstraint("name", name=op.f("uq_audiences_name")),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("audience_id", BigId, nullable=True),
        _stamp("scheduled_at", nullable=True),
        sa.Column("cron", sa.String(length=128), nullable=True),
        _stamp("next_run_at", nullable=True),
        sa.Column("run", sa.Integer(), nullable=False),
        _stamp("run_started_at", nullable=True),
        sa.Column("plan_cursor", sa.String(length=128), nullable=True),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("trigger_state", sa.JSON(), nullable=True),
        _stamp("completed_at", nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(op.f("ix_campaigns_status"), "campaigns", ["status"])
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", BigId, nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        _stamp("planned_at"),
        sa.PrimaryKeyConstraint(
            "campaign_id", "run", "user_id", "channel", name=op.f("pk_campaign_recipients")
        ),
    )
    op.create_index(op.f("ix_campaign_recipients_user_id"), "campaign_recipients", ["user_id"])
    op.create_table(
        "message_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("delivery_key", sa.String(length=200), nullable=False),
        sa.Column("campaign_id", BigId, nullable=True),
        sa.Column("user_id", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=True),
        _stamp("occurred_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_events")),
    )
    op.create_index(op.f("ix_message_events_campaign_id_kind"), "message_events", ["campaign_id", "kind"])
    op.create_index(op.f("ix_message_events_user_id"), "message_events", ["user_id"])
    op.create_table(
        "suppressions",
        sa.Column("email_bidx", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("email_bidx", name=op.f("pk_suppressions")),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("message_events")
    op.drop_table("campaign_recipients")
    op.drop_table("campaigns")
    op.drop_table("audiences")
    op.drop_index(op.f("ix_deliveries_campaign_id_status"), table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("campaign_id")
