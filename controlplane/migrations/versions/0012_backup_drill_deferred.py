"""backup: why a due drill waits (no verified recovery point yet)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("backup_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drill_deferred_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backup_policies", schema=None) as batch_op:
        batch_op.drop_column("drill_deferred_reason")
