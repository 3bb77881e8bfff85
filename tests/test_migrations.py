"""The migrations build exactly the schema the models describe, on both stores (else a column added to a
model but not to a migration would only fail in production)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.store import models, users  # noqa: F401 — their tables make up Base.metadata
from hub.store.base import Base
from hub.store.db import make_engine


def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    # alembic_version is Alembic's own table; anything else is drift.
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == "alembic_version")] == []
