"""Helpers shared by test modules: real services (PostgreSQL) as fixtures."""
