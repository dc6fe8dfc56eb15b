"""Alembic migrations of the coordinator database (run with `libra coordinator db upgrade`)."""
