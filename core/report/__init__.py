"""A portfolio's report: one self-contained HTML page with server-rendered SVG charts."""
