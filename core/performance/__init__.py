"""Portfolio performance and P&L attribution from daily snapshots.

Pure numpy, no I/O. ``metrics`` turns snapshots' P&L and equity into time-weighted daily
returns and computes, for many portfolios at once, the metrics people know from empyrical
(cumulative and annualized return, volatility, Sharpe, Sortino, maximum drawdown with its
dates, Calmar, best / worst day, hit rate; alpha, beta, tracking error, information ratio,
up / down capture against a benchmark), with every convention stated. ``attribution`` splits
each day's P&L into the previous day's factor exposures times the factors' returns plus a
specific remainder, an identity.
"""
