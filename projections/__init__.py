"""Projections: read tables built from the event stream (arrive with the projections issue)."""
