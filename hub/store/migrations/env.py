"""Alembic environment: run by `hub db upgrade` (and by `hub run` for an embedded database)."""

from alembic import context

from hub.store import models, users  # noqa: F401 — their tables make up Base.metadata
from hub.store.base import Base
from hub.store.db import make_engine

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata,
                      # SQLite cannot ALTER most things in place; batch mode rebuilds tables for it.
                      render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:   # hub.store.schema always sets it; only alembic run by hand without one gets here
        raise RuntimeError("no sqlalchemy.url to migrate: run `hub db upgrade`")
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
