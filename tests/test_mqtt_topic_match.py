"""The client's own topic matcher (filters split once) agrees with paho's reference."""

from __future__ import annotations

import itertools

import paho.mqtt.client as paho
import pytest

from crowdwatch.mqtt.client import _filter_levels, _filter_matches

FILTERS = ["a/+/+/counts", "a/#", "#", "+", "+/+", "a/b", "$SYS/#", "+/b/#", "a/+", "a//b", "/+"]
TOPICS = ["a/s/c/counts", "a", "a/b", "a/b/c", "$SYS/x", "$SYS", "b", "/", "/a", "a//b", "a/"]


@pytest.mark.parametrize(("topic_filter", "topic"), list(itertools.product(FILTERS, TOPICS)))
def test_matches_as_paho_does(topic_filter: str, topic: str) -> None:
    expected = paho.topic_matches_sub(topic_filter, topic)
    assert _filter_matches(_filter_levels(topic_filter), topic.split("/")) is expected
    shared = f"$share/ingest/{topic_filter}"
    assert _filter_matches(_filter_levels(shared), topic.split("/")) is expected
