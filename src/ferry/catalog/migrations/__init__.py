"""Alembic migrations of the catalogue, run by Catalog.migrate() (no alembic.ini needed)."""
