"""Shared test helpers (bounded waits, engine processes)."""
