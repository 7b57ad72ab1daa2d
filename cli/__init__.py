"""The factorflow command line: a layer above ``api`` and ``flows`` (it may import both)."""
