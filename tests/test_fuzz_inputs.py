"""Bad input at the doors that take no network: MQTT payloads, the site config, the alert rules.

The MQTT payloads reach every door that decodes them (the contract's decoders, the ingest's
validator, the alert engine's inbox) with numbers of any size, any Unicode (NUL and lone
surrogates included) and any nesting.

Property-based (hypothesis): arbitrary bytes, and valid documents with a few random mutations
(a value replaced by any JSON value or by a nasty one, a key deleted, an unknown key added).
Every outcome must be the contract's own error (``MessageError``, ``ConfigError``) or a valid
value; any other exception is a bug in the door.  The strategies are in fuzz_strategies.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from factories import config_dict, count_message, make_config, site_dict
from fuzz_strategies import ANY_CHARACTER, COUNTS_DOC, mutated, paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdwatch.analytics.inbox import CountInbox
from crowdwatch.analytics.rules import effective_rule
from crowdwatch.contracts.config import CrowdwatchConfig, parse_config
from crowdwatch.contracts.errors import ConfigError, MessageError
from crowdwatch.contracts.messages import (
    MAX_REASON_CHARS,
    CameraState,
    CountMessage,
    StatusMessage,
    decode_counts,
    decode_status,
    encode,
    utc_now,
)
from crowdwatch.ingest.validate import Accepted, Envelope, MessageValidator, Rejected

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "configs/district.example.yaml"

# Small and deadline-free: the suite runs on a shared 2-core box.
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8")


STATUS_DOC = json.loads(
    encode(
        StatusMessage(
            site_id="stop-a",
            camera_id="cam1",
            ts=count_message().ts,
            state=CameraState.ONLINE,
            fps=10.0,
            inference_ms=30.0,
            dropped_frames=0,
        )
    )
)


# --- MQTT payloads ------------------------------------------------------------------------


@pytest.mark.parametrize("decode", [decode_counts, decode_status])
@FUZZ
@given(payload=st.binary(max_size=400))
def test_any_bytes_decode_to_a_message_or_a_message_error(decode: Any, payload: bytes) -> None:
    try:
        message = decode(payload)
    except MessageError as exc:
        assert str(exc)
    else:
        assert isinstance(message, CountMessage | StatusMessage)


@pytest.mark.parametrize(
    ("decode", "base"), [(decode_counts, COUNTS_DOC), (decode_status, STATUS_DOC)]
)
@FUZZ
@given(data=st.data())
def test_a_mutated_message_is_valid_or_a_message_error(
    decode: Any, base: dict[str, Any], data: st.DataObject
) -> None:
    doc = data.draw(mutated(base))
    try:
        message = decode(_json_bytes(doc))
    except MessageError as exc:
        assert str(exc)
    else:
        # What passes holds the contract's invariants.
        assert message.ts.utcoffset() is not None
        if isinstance(message, CountMessage):
            assert all(z.count >= 0 and z.count_max >= 0 for z in message.zones)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'{"a":' * 50_000,
        b'{"schema": "crowdwatch.counts/1", "zones": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
    ids=["deep-array", "deep-object", "deep-field"],
)
def test_a_deeply_nested_payload_is_a_message_error(payload: bytes) -> None:
    for decode in (decode_counts, decode_status):
        with pytest.raises(MessageError):
            decode(payload)


# --- the site config and the alert rules --------------------------------------------------


def _example_doc() -> dict[str, Any]:
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


EXAMPLE_DOC = _example_doc()
SMALL_DOC = config_dict(site_dict("stop-a"), site_dict("stop-b"))


def _parse_or_config_error(doc: Any) -> CrowdwatchConfig | None:
    try:
        return parse_config(doc, origin="fuzz")
    except ConfigError as exc:
        assert str(exc)  # names the YAML path (an unset ${VAR} is reported without the origin)
        return None


def test_the_unmutated_documents_are_valid() -> None:
    # The mutations start from valid configs, or the property would prove nothing.
    assert _parse_or_config_error(copy.deepcopy(EXAMPLE_DOC)) is not None
    assert _parse_or_config_error(copy.deepcopy(SMALL_DOC)) is not None


@pytest.mark.parametrize("base", [EXAMPLE_DOC, SMALL_DOC], ids=["example", "small"])
@FUZZ
@given(data=st.data())
def test_a_mutated_config_is_valid_or_a_config_error(
    base: dict[str, Any], data: st.DataObject
) -> None:
    config = _parse_or_config_error(data.draw(mutated(base)))
    if config is not None:
        # A config that loads can be walked without surprises.
        assert all(config.site(site.id) is site for site in config.sites)
        assert {(s.id, c.id) for s, c in config.cameras()}


@FUZZ
@given(data=st.data())
def test_mutated_alert_rules_are_valid_or_a_config_error(data: st.DataObject) -> None:
    doc = copy.deepcopy(EXAMPLE_DOC)
    doc["alerts"] = data.draw(mutated(EXAMPLE_DOC["alerts"], max_mutations=4))
    config = _parse_or_config_error(doc)
    if config is None:
        return
    # Every rule of a config that loads resolves for every site and zone without an error.
    for rule in config.alerts.rules:
        for site in config.sites:
            effective_rule(rule, site, None)
            for camera in site.cameras:
                for zone in camera.zones:
                    resolved = effective_rule(rule, site, zone.id)
                    if resolved is not None:
                        assert resolved.id == rule.id and resolved.clear_at <= resolved.fire_at


# --- every MQTT door: numbers of any size, any Unicode, any nesting --------------------------
#
# The same hostile part (a number written as JSON text of up to 6000 digits, a string of any
# code points, NUL and lone surrogates included, or a value nested up to 200000 deep) put at
# a random place of a valid message, and handed to each door that decodes MQTT payloads: the
# contract's decoder, the ingest's validator, the alert engine's inbox.  The decoder answers
# with a message or a MessageError; the validator with Accepted, Rejected or None; the inbox
# with the valid messages and a count of the rest.  Nothing else, ever.


CHANNELS = [
    {"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook", "timeout_s": 2},
    {"id": "wx", "type": "wecom", "url": "http://127.0.0.1:9/wx?key=k", "mention": ["138"]},
    {"id": "dd", "type": "dingtalk", "url": "http://127.0.0.1:9/dd?t=1", "secret": "s"},
    {"id": "fs", "type": "feishu", "url": "http://127.0.0.1:9/fs", "secret": "s"},
    {"id": "gf", "type": "grafana", "url": "http://127.0.0.1:9", "token": "t"},
    {"id": "mail", "type": "email", "smtp": {"host": "h", "from_addr": "a@b.c", "to": ["d@e.f"]}},
]


@FUZZ
@given(data=st.data())
def test_mutated_channels_are_valid_or_a_config_error_naming_the_channel(
    data: st.DataObject,
) -> None:
    doc = copy.deepcopy(EXAMPLE_DOC)
    doc["alerts"]["channels"] = data.draw(mutated(CHANNELS, max_mutations=3))
    try:
        config = parse_config(doc, origin="fuzz")
    except ConfigError as exc:
        # One line, starting at the YAML path; a union tag pydantic adds never shows.
        message = str(exc)
        assert "\n" not in message
        assert not any(f"].{t}." in message for t in ("webhook", "wecom", "email", "grafana"))
        return
    for channel in config.alerts.channels:
        assert channel.type.value in {c["type"] for c in CHANNELS}


@st.composite
def json_number_text(draw: st.DrawFn) -> str:
    """A JSON number of any size, as text (``json.dumps`` refuses integers past 4300 digits)."""
    digits = draw(st.integers(1, 6000))
    first = draw(st.sampled_from("123456789"))
    text = draw(st.sampled_from(["", "-"])) + first + "7" * (digits - 1)
    if draw(st.booleans()):
        text += "." + "3" * draw(st.integers(1, 50))
    if draw(st.booleans()):
        text += "e" + draw(st.sampled_from(["", "-", "+"])) + str(draw(st.integers(0, 10**6)))
    return text


@st.composite
def nested_text(draw: st.DrawFn) -> str:
    """A JSON value nested 1 to 200000 deep in arrays or objects."""
    depth = draw(st.integers(1, 200_000))
    if draw(st.booleans()):
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


HOSTILE_PART: st.SearchStrategy[str] = st.one_of(
    json_number_text(),
    st.text(ANY_CHARACTER, max_size=40).map(json.dumps),
    nested_text(),
)
"""JSON text of one hostile value."""

_SLOT = "__fuzz_slot__"


@st.composite
def hostile_payload(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """``base`` with one value (or a new key's value) replaced by a hostile part."""
    doc = copy.deepcopy(base)
    path = draw(st.sampled_from([p for p in paths(doc) if p]))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()):
        # A new key of any Unicode, holding the hostile value.
        parent[draw(st.text(ANY_CHARACTER, max_size=12))] = _SLOT
    else:
        parent[path[-1]] = _SLOT
    text = json.dumps(doc).replace(json.dumps(_SLOT), draw(HOSTILE_PART), 1)
    return text.encode("utf-8", "surrogatepass")


DOORS_CONFIG = make_config(config_dict(site_dict("stop-a")), mqtt={"topic_prefix": "t"})


@pytest.mark.parametrize(
    ("kind", "base"), [("counts", COUNTS_DOC), ("status", STATUS_DOC)], ids=["counts", "status"]
)
@FUZZ
@given(data=st.data())
def test_any_number_unicode_or_nesting_reaches_every_mqtt_door_harmlessly(
    kind: str, base: dict[str, Any], data: st.DataObject
) -> None:
    payload = data.draw(hostile_payload(base))
    decode = decode_counts if kind == "counts" else decode_status
    try:
        decode(payload)
    except MessageError as exc:
        assert 0 < len(str(exc)) <= MAX_REASON_CHARS + 200  # no echo of the input
    envelope = Envelope.received(f"t/v1/stop-a/cam1/{kind}", payload, utc_now())
    outcome = MessageValidator(DOORS_CONFIG).validate(envelope)
    assert outcome is None or isinstance(outcome, Accepted | Rejected)
    if kind == "counts":
        inbox = CountInbox()
        valid = encode(count_message())
        for each in (valid, payload, valid):
            inbox.offer(each)
        taken = inbox.take(0.0)
        # The hostile one is taken or counted; its neighbours are taken either way.
        assert len(taken) + inbox.refused == 3 and len(taken) >= 2
