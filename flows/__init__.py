"""Prefect flows and tasks: thin orchestration over ``core``; plus the CLI."""
