"""Ledgerline's event store: the Identity application, store configuration, schema, crypto."""
