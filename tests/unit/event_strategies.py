"""Hypothesis strategies for every event, built from the Structs' own field types.

Generic on purpose: a field added to a schema is covered by the round-trip tests without
anyone touching them.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from makerflow.schemas.events import SCHEMA_VERSION

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=12)
SMALL = 4
"""Longest generated collection: enough to catch ordering and nesting bugs, cheap to run."""


def strategy_for(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy for values of the msgspec type ``t``."""
    if isinstance(t, mi.IntType):
        return INT64
    if isinstance(t, mi.FloatType):
        return FLOATS
    if isinstance(t, mi.StrType):
        return TEXT
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.BytesType):
        return st.binary(max_size=64)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of([strategy_for(x) for x in t.types])
    if isinstance(t, mi.VarTupleType):
        return st.lists(strategy_for(t.item_type), max_size=SMALL).map(tuple)
    if isinstance(t, mi.TupleType):
        return st.tuples(*(strategy_for(x) for x in t.item_types))
    if isinstance(t, mi.DictType):
        return st.dictionaries(strategy_for(t.key_type), strategy_for(t.value_type), max_size=SMALL)
    if isinstance(t, mi.StructType):
        return struct_strategy(t.cls)
    raise TypeError(f"no strategy for msgspec type {t!r}: extend tests/unit/event_strategies.py")


def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with every field drawn (optional ones sometimes left default)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in info.fields:
        if f.name == "v":
            # Writers always stamp the current version; other versions are refused (tested
            # separately).
            required["v"] = st.just(SCHEMA_VERSION)
        elif f.required:
            required[f.name] = strategy_for(f.type)
        else:
            optional[f.name] = strategy_for(f.type)
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))
