"""Services the API and the CLI call, one module per area (see README, Layout).

Services hold no HTTP, Prefect or flow code: they use repositories, the math packages and
``core.launch`` (to start flows through whatever launcher the caller installed)."""
