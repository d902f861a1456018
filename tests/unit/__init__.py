"""Unit tests: pure, no database."""
