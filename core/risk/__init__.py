"""Portfolio risk math: position correlations and factor stress tests.

Pure numpy / scipy, no I/O. ``correlation`` turns daily log returns of a portfolio's
positions into a pairwise-complete correlation matrix, repairs it to the nearest
valid correlation matrix when needed and summarises it (value-weighted average
correlation, clusters, effective number of positions). ``stress`` estimates the
factor-ETF covariance, propagates factor shocks by their conditional expectation,
replays historical windows and turns portfolio factor dollar exposures into P&L.
"""
