"""Fixtures of the console tests: the cloud tests' migrated database (tests/cloud/conftest.py)."""

from tests.cloud.conftest import db, migrated_db

__all__ = ["db", "migrated_db"]
