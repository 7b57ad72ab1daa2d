"""factorflow domain: calendar, providers, factor engine, portfolio math, persistence.

Everything here is callable without Prefect or Litestar.
"""
