"""Alembic environment: always run programmatically, on a connection handed over by euroflow."""

from alembic import context

from euroflow.provenance.models import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("euroflow provenance migrations run only through euroflow.provenance.db.open_db")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
