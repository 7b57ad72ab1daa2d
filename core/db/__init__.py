"""Persistence: SQLModel tables, the async engine, set-based upserts and repositories."""
