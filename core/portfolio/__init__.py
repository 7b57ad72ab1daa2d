"""Portfolio domain math: pure functions, no I/O.

* :mod:`core.portfolio.valuation` values one portfolio on one day from its holdings,
  raw closes and splits (market values, exposures, cost basis, unrealized and daily
  P&L), in exact ``decimal.Decimal`` money.
* :mod:`core.portfolio.aggregation` aggregates per-symbol factor betas and sectors to
  the portfolio, weighting positions by signed market value / equity (shorts count
  negative), in float64.
"""
