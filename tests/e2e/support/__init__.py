"""Helpers for the end-to-end tests, one module per job (see conftest.py)."""
