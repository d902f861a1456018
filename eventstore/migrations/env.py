"""Alembic environment: always run with a connection handed over by ``eventstore.schema``."""

from alembic import context

from eventstore.personal_data import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
