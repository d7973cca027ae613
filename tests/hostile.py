"""Hostile MQTT payloads, each with a fragment of the reason it must be refused with.

Valid messages of stop-a/cam1 with one thing made hostile: numbers past what Python's ``json``
reads (an integer of 5000 digits raises a bare ``ValueError``), floats past ``float``, nesting
past the recursion limit, NUL and lone surrogates, payloads past ``MAX_PAYLOAD_BYTES``.  Used
by the door tests (test_hostile_messages) and the real-process test (test_faults_hostile).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from factories import count_message

from crowdwatch.contracts.messages import (
    MAX_PAYLOAD_BYTES,
    CameraState,
    StatusMessage,
    encode,
)

_RAW = "__raw_json_here__"


@dataclass(frozen=True, slots=True)
class Hostile:
    name: str
    kind: str
    """``counts`` or ``status``: the topic it is published on."""
    payload: bytes
    reason: str
    """A fragment of the reason it must be refused with."""


def counts_doc(ts: datetime, site_id: str = "stop-a") -> dict[str, Any]:
    return dict(json.loads(encode(count_message(site_id=site_id, ts=ts))))


def status_doc(ts: datetime) -> dict[str, Any]:
    message = StatusMessage(site_id="stop-a", camera_id="cam1", ts=ts, state=CameraState.ONLINE)
    return dict(json.loads(encode(message)))


def with_raw(doc: dict[str, Any], path: list[str | int], raw: str) -> bytes:
    """``doc`` as JSON with the value at ``path`` replaced by the JSON text ``raw`` as it is
    (``json.dumps`` itself refuses to write an integer of more than 4300 digits)."""
    copy = json.loads(json.dumps(doc))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = _RAW
    return json.dumps(copy).replace(f'"{_RAW}"', raw).encode()


def hostile_payloads(ts: datetime) -> list[Hostile]:
    """The hostile payloads, dated ``ts`` (so only the hostile part is wrong)."""
    counts = counts_doc(ts)
    status = status_doc(ts)
    nul_id = {**counts, "message_id": "abcd\x00efgh"}
    surrogate_detail = with_raw(status, ["detail"], '"cam\\ud800era"')
    return [
        Hostile(
            "5000-digit frames",
            "counts",
            with_raw(counts, ["frames"], "9" * 5000),
            "integer of more than 4300 digits",
        ),
        Hostile(
            "5000-digit negative count",
            "counts",
            with_raw(counts, ["zones", 0, "count"], "-" + "1" * 5000),
            "integer of more than 4300 digits",
        ),
        Hostile(
            "4301-digit float interval",
            "counts",
            with_raw(counts, ["interval_s"], "7" * 4301 + ".25"),
            "interval_s",
        ),
        Hostile(
            "1e999 count_mean",
            "counts",
            with_raw(counts, ["zones", 0, "count_mean"], "1e999"),
            "zones.0.count_mean",
        ),
        Hostile(
            "zones nested 100000 deep",
            "counts",
            with_raw(counts, ["zones"], "[" * 100_000 + "]" * 100_000),
            "nested too deeply",
        ),
        Hostile(
            "NUL in the message id",
            "counts",
            json.dumps(nul_id).encode(),
            "message_id",
        ),
        Hostile(
            "a lone surrogate in the message id",
            "counts",
            with_raw(counts, ["message_id"], '"\\udc00abcdefgh"'),
            "message_id",
        ),
        Hostile(
            "an extra key of 100000 characters",
            "counts",
            json.dumps({**counts, "k" * 100_000: 1}).encode(),
            "Extra inputs are not permitted",
        ),
        Hostile(
            "a payload over the size limit",
            "counts",
            json.dumps({**counts, "pad": "x" * (MAX_PAYLOAD_BYTES + 10)}).encode(),
            f"more than the {MAX_PAYLOAD_BYTES} a message may be",
        ),
        Hostile(
            "a lone surrogate in a status detail",
            "status",
            surrogate_detail,
            "detail: Input should be a valid string",
        ),
        Hostile(
            "a dropped_frames past bigint",
            "status",
            with_raw(status, ["dropped_frames"], str(2**63)),
            "dropped_frames",
        ),
    ]
