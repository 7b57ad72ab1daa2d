"""Admin routes over the symbol universe (``/v1/admin/symbols``)."""
