"""removal request kinds: volume-backup, deletion, allocation-retirement; the retired state

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 18:30:00

Extends the CHECKs on requests.kind and requests.state, widens requests.kind (its width
follows the longest kind) and adds requests.target_id (the request a volume backup or a
deletion names). Batch mode: SQLite rebuilds the table, PostgreSQL alters it in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "'vm', 'volume', 'bucket', 'k8s-namespace', 'backup-enrolment', 'quota-change', 'tenant-onboarding'"
NEW_KINDS = OLD_KINDS + ", 'volume-backup', 'deletion', 'allocation-retirement'"
OLD_STATES = (
    "'draft', 'submitted', 'pending_approval', 'approved', 'provisioning', 'succeeded', "
    "'failed', 'errored', 'returned', 'rejected', 'cancelled'"
)
NEW_STATES = OLD_STATES + ", 'retired'"


def _checks(batch_op: object, kinds: str, states: str) -> None:
    batch_op.create_check_constraint(op.f("ck_requests_kind_valid"), f"kind IN ({kinds})")  # type: ignore[attr-defined]
    batch_op.create_check_constraint(op.f("ck_requests_state_valid"), f"state IN ({states})")  # type: ignore[attr-defined]


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_requests_kind_valid"), type_="check")
        batch_op.drop_constraint(op.f("ck_requests_state_valid"), type_="check")
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=25), type_=sa.String(length=29), existing_nullable=False
        )
        batch_op.add_column(sa.Column("target_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_requests_target_id"), ["target_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_requests_target_id_requests"), "requests", ["target_id"], ["id"], ondelete="RESTRICT"
        )
        _checks(batch_op, NEW_KINDS, NEW_STATES)


def downgrade() -> None:
    op.execute("UPDATE requests SET state = 'succeeded' WHERE state = 'retired'")
    op.execute(
        "DELETE FROM request_transitions WHERE request_id IN "
        "(SELECT id FROM requests WHERE kind IN ('volume-backup', 'deletion', 'allocation-retirement'))"
    )
    op.execute(
        "DELETE FROM approval_steps WHERE request_id IN "
        "(SELECT id FROM requests WHERE kind IN ('volume-backup', 'deletion', 'allocation-retirement'))"
    )
    op.execute("DELETE FROM requests WHERE kind IN ('volume-backup', 'deletion', 'allocation-retirement')")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_requests_kind_valid"), type_="check")
        batch_op.drop_constraint(op.f("ck_requests_state_valid"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_requests_target_id_requests"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_requests_target_id"))
        batch_op.drop_column("target_id")
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=29), type_=sa.String(length=25), existing_nullable=False
        )
        _checks(batch_op, OLD_KINDS, OLD_STATES)
