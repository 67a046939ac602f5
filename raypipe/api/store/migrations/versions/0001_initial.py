"""Initial schema: experiments, pipelines and versions, runs, recurring runs, ticks.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

A frozen copy of the tables as ``models.py`` first declared them: later revisions change
them step by step, so this file never imports the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=64)
NAMESPACE = sa.String(length=128)
NAME = sa.String(length=255)
STATE = sa.String(length=16)
DIGEST = sa.String(length=64)
TIME = sa.DateTime(timezone=True)


def _named() -> list[sa.Column[str]]:
    """The columns every named resource starts with."""
    return [
        sa.Column("id", ID, nullable=False),
        sa.Column("namespace", NAMESPACE, nullable=False),
        sa.Column("display_name", NAME, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "raypipe_experiments",
        *_named(),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("storage_state", STATE, nullable=False),
        sa.Column("last_run_created_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_raypipe_experiments"),
        sa.UniqueConstraint(
            "namespace", "display_name", name="uq_raypipe_experiments_namespace_display_name"
        ),
    )
    op.create_index(
        "ix_raypipe_experiments_list", "raypipe_experiments", ["namespace", "created_at", "id"]
    )

    op.create_table(
        "raypipe_pipelines",
        *_named(),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_raypipe_pipelines"),
        sa.UniqueConstraint(
            "namespace", "display_name", name="uq_raypipe_pipelines_namespace_display_name"
        ),
    )
    op.create_index(
        "ix_raypipe_pipelines_list", "raypipe_pipelines", ["namespace", "created_at", "id"]
    )

    op.create_table(
        "raypipe_pipeline_versions",
        sa.Column("id", ID, nullable=False),
        sa.Column("pipeline_id", ID, nullable=False),
        sa.Column("namespace", NAMESPACE, nullable=False),
        sa.Column("display_name", NAME, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("pipeline_spec", sa.Text(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["raypipe_pipelines.id"],
            name="fk_raypipe_pipeline_versions_pipeline_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_raypipe_pipeline_versions"),
        sa.UniqueConstraint(
            "pipeline_id",
            "display_name",
            name="uq_raypipe_pipeline_versions_pipeline_id_display_name",
        ),
    )
    op.create_index(
        "ix_raypipe_pipeline_versions_list",
        "raypipe_pipeline_versions",
        ["pipeline_id", "created_at", "id"],
    )

    op.create_table(
        "raypipe_recurring_runs",
        *_named(),
        sa.Column("experiment_id", ID, nullable=True),
        sa.Column("pipeline_version_id", ID, nullable=True),
        sa.Column("pipeline_spec", sa.Text(), nullable=False),
        sa.Column("pipeline_spec_digest", DIGEST, nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("start_time", TIME, nullable=True),
        sa.Column("end_time", TIME, nullable=True),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("no_catchup", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_tick_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(
            "(cron IS NULL) <> (interval_seconds IS NULL)",
            name="ck_raypipe_recurring_runs_one_trigger",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["raypipe_experiments.id"],
            name="fk_raypipe_recurring_runs_experiment_id",
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_version_id"],
            ["raypipe_pipeline_versions.id"],
            name="fk_raypipe_recurring_runs_pipeline_version_id",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_raypipe_recurring_runs"),
    )
    op.create_index(
        "ix_raypipe_recurring_runs_list",
        "raypipe_recurring_runs",
        ["namespace", "created_at", "id"],
    )
    op.create_index(
        "ix_raypipe_recurring_runs_experiment",
        "raypipe_recurring_runs",
        ["namespace", "experiment_id", "created_at", "id"],
    )

    op.create_table(
        "raypipe_runs",
        *_named(),
        sa.Column("experiment_id", ID, nullable=True),
        sa.Column("pipeline_version_id", ID, nullable=True),
        sa.Column("recurring_run_id", ID, nullable=True),
        sa.Column("pipeline_spec", sa.Text(), nullable=False),
        sa.Column("pipeline_spec_digest", DIGEST, nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("storage_state", STATE, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("scheduled_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("owner_id", ID, nullable=True),
        sa.Column("heartbeat_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["raypipe_experiments.id"], name="fk_raypipe_runs_experiment_id"
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_version_id"],
            ["raypipe_pipeline_versions.id"],
            name="fk_raypipe_runs_pipeline_version_id",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["recurring_run_id"],
            ["raypipe_recurring_runs.id"],
            name="fk_raypipe_runs_recurring_run_id",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_raypipe_runs"),
    )
    for name, columns in (
        ("list", ["namespace", "created_at", "id"]),
        ("experiment", ["namespace", "experiment_id", "created_at", "id"]),
        ("state", ["namespace", "state", "created_at", "id"]),
        ("version", ["namespace", "pipeline_version_id", "created_at", "id"]),
        ("recurring", ["namespace", "recurring_run_id", "created_at", "id"]),
        ("name", ["namespace", "display_name", "id"]),
        ("owner", ["owner_id", "state"]),
    ):
        op.create_index(f"ix_raypipe_runs_{name}", "raypipe_runs", columns)

    op.create_table(
        "raypipe_schedule_ticks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recurring_run_id", ID, nullable=False),
        sa.Column("namespace", NAMESPACE, nullable=False),
        sa.Column("tick_time", TIME, nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("claimed_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["recurring_run_id"],
            ["raypipe_recurring_runs.id"],
            name="fk_raypipe_schedule_ticks_recurring_run_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_raypipe_schedule_ticks"),
        sa.UniqueConstraint(
            "recurring_run_id",
            "tick_time",
            name="uq_raypipe_schedule_ticks_recurring_run_id_tick_time",
        ),
    )


def downgrade() -> None:
    for table in (
        "raypipe_schedule_ticks",
        "raypipe_runs",
        "raypipe_recurring_runs",
        "raypipe_pipeline_versions",
        "raypipe_pipelines",
        "raypipe_experiments",
    ):
        op.drop_table(table)  # its indexes go with it
