"""`--json` output: the fast encoder writes what `json.dumps(doc, indent=2)` writes."""

from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.cli import print_json

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E))
decimal_floats = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda x: x == 0 or 1e-4 <= abs(x) < 1e16
)
scalars = st.none() | st.booleans() | st.integers() | decimal_floats | printable
ordinary = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(printable, inner, max_size=4),
    max_leaves=30,
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def printed(doc: Any) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_json(doc)
    return buf.getvalue()


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(doc=ordinary)
def test_ordinary_documents_come_out_byte_for_byte_as_json_dumps_writes_them(
    doc: Any,
) -> None:
    assert printed(doc) == json.dumps(doc, indent=2) + "\n"


@given(doc=anything)
def test_any_document_reads_back_to_the_same_values_and_stays_ascii(
    doc: Any,
) -> None:
    out = printed(doc)
    assert out.isascii()
    assert same(json.loads(out), json.loads(json.dumps(doc)))


@pytest.mark.parametrize(
    "doc",
    [
        {"gateways": [{"name": "kitchen", "age_s": float("nan"), "quiet_s": float("-inf")}]},
        {"gateways": [{"name": "küche", "reason": "status 'läuft'", "age_s": 1.5}]},
    ],
    ids=["nan-and-infinity", "non-ascii"],
)
def test_what_the_fast_encoder_would_spell_otherwise_is_written_as_json_writes_it(
    doc: Any,
) -> None:
    assert printed(doc) == json.dumps(doc, indent=2) + "\n"
