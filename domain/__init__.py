"""Ledgerline's domain: aggregates, their events and their rules. Standard library and
``eventsourcing.domain`` only."""
