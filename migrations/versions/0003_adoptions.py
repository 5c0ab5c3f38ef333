"""adoptions: models whose first release came from an existing API

One row per adopted model (``protoreg adopt``): the release that was adopted, the file it came
from, and the adoption itself as JSON (implicit presence, legacy reservations, the legacy RPC
path and files). A database without adopted models gains an empty table; no rows are migrated.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 19:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('adoptions',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('plan_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_adoptions_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_adoptions_release_id_releases'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', name=op.f('pk_adoptions'))
    )


def downgrade() -> None:
    op.drop_table('adoptions')
