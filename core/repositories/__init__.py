"""Repositories: keyword-style async functions over an ``AsyncConnection``, set-based writes."""
