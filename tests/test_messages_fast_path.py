"""The count message's fast decode path gives exactly what the reference path gives.

``decode_counts`` parses a well-formed payload in one pass with pydantic-core and sends
everything else to the reference path (``json`` then the model).  Differential tests: for
valid, mutated, hostile and hand-made tricky payloads written the way the edge writes them
(compact, starting with the schema tag, so that they enter the fast path), the outcome of
``decode_counts`` (the message, or the error text) equals the reference path's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import count_message
from fuzz_strategies import COUNTS_DOC, mutated
from hostile import hostile_payloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdwatch.contracts.errors import MessageError
from crowdwatch.contracts.messages import (
    _COUNTS_HEAD,
    COUNTS_SCHEMA,
    CountMessage,
    _decode,
    _decode_counts_fast,
    decode_counts,
    encode,
    utc_now,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _outcome(decode: Any, payload: bytes) -> tuple[str, object]:
    try:
        return ("message", decode(payload))
    except MessageError as exc:
        return ("error", str(exc))


def _reference(payload: bytes) -> CountMessage:
    message = _decode(payload, CountMessage, COUNTS_SCHEMA)
    assert isinstance(message, CountMessage)
    return message


def _edge_style(doc: Any) -> bytes:
    """Compact JSON, as the edge writes it; lone surrogates kept as raw (invalid) bytes."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def test_what_the_edge_writes_takes_the_fast_path() -> None:
    message = count_message()
    assert _decode_counts_fast(encode(message)) == message
    assert decode_counts(encode(message)) == _reference(encode(message))


@FUZZ
@given(data=st.data())
def test_a_mutated_message_decodes_as_the_reference_path_decodes_it(data: st.DataObject) -> None:
    doc = data.draw(mutated(COUNTS_DOC))
    if isinstance(doc, dict) and "schema" in doc:
        # Keep the tag first (when it survived the mutation), so the payload enters the fast path.
        doc = {"schema": doc.pop("schema"), **doc}
    payload = _edge_style(doc)
    fast, reference = _outcome(decode_counts, payload), _outcome(_reference, payload)
    if not (isinstance(doc, dict) and "message_id" in doc):
        # Without one, each decode draws a fresh id (the model's default): compare the rest.
        fast, reference = _without_id(fast), _without_id(reference)
    assert fast == reference


def _without_id(outcome: tuple[str, object]) -> tuple[str, object]:
    kind, value = outcome
    if isinstance(value, CountMessage):
        return kind, value.model_copy(update={"message_id": ""})
    return outcome


def _tricky() -> list[bytes]:
    base = encode(count_message())
    body = base[len(_COUNTS_HEAD) :]
    return [
        base,
        # no tag at all: the model's default must not stand in for it
        b"{" + body,
        # the field's own name instead of its alias
        b'{"schema_":"crowdwatch.counts/1",' + body,
        _COUNTS_HEAD + b'"schema_":"crowdwatch.counts/1",' + body,
        # a later key overrides the tag (both parsers: the last one wins)
        _COUNTS_HEAD + b'"schema":"crowdwatch.status/1",' + body,
        _COUNTS_HEAD + b'"\\u0073chema":"other",' + body,
        # a duplicated value: the last one, in both
        _COUNTS_HEAD + b'"frames":999999999,' + body,
        base.replace(b'"frames":', b'"frames":1,"frames":', 1),
        base.replace(b'"frames":', b'"frames":NaN,"frames":', 1),
        # lenient conversions must match: numbers as strings, floats for ints
        base.replace(b'"frames":10', b'"frames":"10"', 1),
        base.replace(b'"frames":10', b'"frames":10.0', 1),
        base.replace(b'"frames":10', b'"frames":1e1', 1),
        base.replace(b'"frames":10', b'"frames":true', 1),
        # not UTF-8, trailing bytes, a BOM, whitespace
        base + b"\xff",
        base + b" ",
        base + b"{}",
        b"\xef\xbb\xbf" + base,
        base.replace(b"stop-a", b"stop-\xc3\xa9", 1),
        base.replace(b"stop-a", b"stop-\xed\xa0\x80", 1),
    ]


@pytest.mark.parametrize("payload", _tricky())
def test_a_tricky_payload_decodes_as_the_reference_path_decodes_it(payload: bytes) -> None:
    assert _outcome(decode_counts, payload) == _outcome(_reference, payload)


def test_a_hostile_payload_decodes_as_the_reference_path_decodes_it() -> None:
    spaced_head = b'{"schema": "crowdwatch.counts/1", '
    for hostile in hostile_payloads(utc_now()):
        if hostile.kind != "counts":
            continue
        # As the edge would space it, so that it meets the fast path first.
        payload = hostile.payload.replace(spaced_head, _COUNTS_HEAD, 1)
        fast, reference = _outcome(decode_counts, payload), _outcome(_reference, payload)
        assert fast == reference, hostile.name
        assert fast[0] == "error", hostile.name
