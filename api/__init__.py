"""factorflow's HTTP API (Litestar): :func:`api.app.create_app`, one folder per domain."""
