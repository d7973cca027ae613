"""Hypothesis strategies for bad input: any JSON value, values at the edges, mutated documents.

Shared by the fuzz tests of the doors (test_fuzz_inputs), of the web API (test_fuzz_web) and
the hostile MQTT messages (test_hostile_messages).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from factories import count_message
from hypothesis import strategies as st

from crowdwatch.contracts.messages import encode

INJECTIONS = [
    "'; DROP TABLE zone_counts; --",
    "stop-a' OR '1'='1",
    '"; DROP TABLE alerts; --',
    "%s %(x)s {0} ${HOME} $1",
    "\\'); DELETE FROM sites; --",
]

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
"""Any JSON value (NaN and infinities included: Python's json writes and reads them)."""

NASTY: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        "",
        "x" * 5000,
        "\x00",
        "${UNSET_CROWDWATCH_FUZZ_VARIABLE}",
        "${",
        -1,
        0,
        2**63,
        -(2**63) - 1,
        1e308,
        float("nan"),
        float("inf"),
        [],
        {},
        True,
        "2026-13-45T99:00:00Z",
        "2026-10-01T08:00:00",  # no time zone
        *INJECTIONS,
    ]
)
"""Values at the edges of what the fields accept."""


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def _fresh(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> Any:
    # NASTY hands out the same [] and {} objects each time: a later mutation must not edit them.
    return copy.deepcopy(draw(values))


def _mutate_once(draw: st.DrawFn, doc: Any) -> Any:
    path = draw(st.sampled_from(paths(doc)))
    if not path:
        return _fresh(draw, JSON_VALUES | NASTY)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    operation = draw(st.sampled_from(["replace", "nasty", "delete", "add_key"]))
    if operation == "delete":
        del parent[last]
    elif operation == "add_key" and isinstance(parent[last], dict):
        parent[last][draw(st.text(max_size=12))] = draw(JSON_VALUES)
    elif operation == "nasty":
        parent[last] = _fresh(draw, NASTY)
    else:
        parent[last] = draw(JSON_VALUES)
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: Any, max_mutations: int = 3) -> Any:
    """``base`` (deep-copied) with 1 to ``max_mutations`` random mutations.

    Args:
        draw: hypothesis' draw function.
        base: a JSON-like document (dicts, lists, scalars).
        max_mutations: the most mutations applied.

    Returns:
        The mutated copy.
    """
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        doc = _mutate_once(draw, doc)
    return doc


ANY_CHARACTER: st.SearchStrategy[str] = st.one_of(
    st.characters(exclude_categories=[]),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates, reachable through "\ud800" in JSON
    st.just("\x00"),
)


COUNTS_DOC = json.loads(encode(count_message()))
"""A valid count message as a JSON document (the base that gets mutated)."""
