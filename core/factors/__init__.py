"""The factor engine: per-symbol factor exposures from daily simple returns.

Pure numpy, no I/O. ``definitions`` holds the factor list and thresholds,
``returns`` turns prices into returns, ``ols`` and ``ridge`` are the vectorized
estimators, ``engine.compute_factor_exposures`` is the entry point of the nightly
symbol flow and ``reference.reference_factor_exposures`` is its independent
statsmodels / scikit-learn reference (tests and benchmarks only).
"""
