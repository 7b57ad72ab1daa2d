"""The text of JSON columns (``core.db.types.json_text``) parses back to what ``json.dumps``'s
would, and a real JSON column stores and returns it."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from core.db.engine import create_engine
from core.db.types import json_text

finite = st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)


@given(values)
def test_parses_back_to_what_json_dumps_would(value: object) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


@given(st.lists(finite, max_size=50))
def test_floats_come_back_bit_for_bit(xs: list[float]) -> None:
    back = json.loads(json_text(xs))
    assert [math.copysign(1.0, x) for x in back] == [math.copysign(1.0, x) for x in xs]
    assert back == xs


def test_edge_cases() -> None:
    assert json.loads(json_text({1: "a", "b": [1e-05, 0.1, 5e-324]})) == {
        "1": "a", "b": [1e-05, 0.1, 5e-324]}  # int keys become strings, as json.dumps does
    assert json_text([math.nan, math.inf]) == "[null,null]"  # no NaN in JSON
    assert json.loads(json_text(2**70)) == 2**70  # beyond orjson: json.dumps writes it
    assert json.loads(json_text(np.float64(0.3))) == 0.3
    assert json.loads(json_text("é\u2028")) == "é\u2028"
    with pytest.raises(TypeError):
        json_text({"x": object()})


def test_a_json_column_stores_and_returns_it(tmp_path: object) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/j.db")
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("doc", sa.JSON))
    doc = {"matrix": [[1.0, 0.3945797208], [0.3945797208, 1.0]], "n": [90, 2**40]}

    async def roundtrip() -> tuple[str, object]:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(table.insert(), [{"id": 1, "doc": doc}])
            raw = (await conn.execute(sa.text("SELECT doc FROM t"))).scalar_one()
            back = (await conn.execute(sa.select(table.c.doc))).scalar_one()
        await engine.dispose()
        return raw, back

    raw, back = asyncio.run(roundtrip())
    assert raw == json_text(doc) and back == doc
