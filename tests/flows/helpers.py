"""Independent readers for flow tests: plain sqlite3 + pandas, not factorflow's repositories."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import make_url

DATA_TABLES = (
    "symbols", "prices", "corporate_actions", "symbol_profiles", "symbol_factor_exposures",
    "symbol_daily_metrics", "data_check_findings",
)


def db_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def query(url: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    with sqlite3.connect(db_path(url)) as con:
        return pd.read_sql_query(sql, con, params=params)


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of every data table (batch_runs is a log and excluded), sorted."""
    out = {}
    with sqlite3.connect(db_path(url)) as con:
        for t in DATA_TABLES:
            out[t] = sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
    return out


def adj_close_matrix(url: str, symbols: list[str], sessions: list) -> pd.DataFrame:
    """Stored adjusted closes as a (sessions × symbols) frame, NaN where no row."""
    marks = ",".join("?" * len(symbols))
    df = query(url, f"SELECT symbol, date, adj_close FROM prices WHERE symbol IN ({marks})",
               tuple(symbols))
    df["date"] = pd.to_datetime(df["date"]).dt.date
    wide = df.pivot(index="date", columns="symbol", values="adj_close")
    return wide.reindex(index=sessions, columns=symbols).astype(float)
