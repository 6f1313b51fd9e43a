"""OAuth 2.0: registered providers (client credentials) and pending authorizations (state + PKCE verifier).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSONType = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oauth_providers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("authorize_url", sa.String(2048), nullable=False),
        sa.Column("token_url", sa.String(2048), nullable=False),
        sa.Column("revocation_url", sa.String(2048), nullable=True),
        sa.Column("redirect_uri", sa.String(2048), nullable=True),
        sa.Column("client_id", sa.String(512), nullable=False),
        sa.Column("client_secret", sa.LargeBinary(), nullable=False),
        sa.Column("scopes", JSONType, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_providers"),
        sa.UniqueConstraint("tenant", "name", name="uq_oauth_providers_tenant_name"),
    )
    op.create_table(
        "oauth_authorizations",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("integration", sa.String(255), nullable=False),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("code_verifier", sa.LargeBinary(), nullable=False),
        sa.Column("settings", JSONType, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name="pk_oauth_authorizations"),
    )
    op.create_index("ix_oauth_authorizations_expires_at", "oauth_authorizations", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth_authorizations_expires_at", table_name="oauth_authorizations")
    op.drop_table("oauth_authorizations")
    op.drop_table("oauth_providers")
