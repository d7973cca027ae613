"""A branch on one of our enums that forgets a member fails mypy --strict, not production.

The code branches with ``match`` ending in ``typing.assert_never`` (the metric a rule reads,
the sender of a channel type, the title of a notification event).  These cases run mypy on a
small snippet the way CI runs it on the package: the complete match passes, a match with a
member left out fails naming the member.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

METRIC_MATCH = """
from typing import assert_never
from crowdwatch.contracts.config import AlertMetric

def unit(metric: AlertMetric) -> str:
    match metric:
        case AlertMetric.OCCUPANCY_RATIO | AlertMetric.FORECAST_OCCUPANCY:
            return "share"
        case AlertMetric.PEOPLE | AlertMetric.RISE:
            return "people"
        case AlertMetric.LONGEST_WAIT_MIN:
            return "min"
        case AlertMetric.NO_DATA_S:
            return "s"
        case AlertMetric.CONGESTION_LEVEL:
            return "level"
        case AlertMetric.QUEUE_SPILLBACK:
            return "of the approach"
{density}        case _:
            assert_never(metric)
"""
DENSITY_CASE = """        case AlertMetric.DENSITY_PER_M2:
            return "per m2"
"""

CHANNEL_MATCH = """
from typing import assert_never
from crowdwatch.contracts.channels import (
    AlertChannel, DingtalkChannel, EmailChannel, FeishuChannel, GrafanaChannel, WebhookChannel,
    WecomChannel,
)

def sender(channel: AlertChannel) -> str:
    match channel:
        case WebhookChannel() | WecomChannel() | DingtalkChannel() | FeishuChannel():
            return channel.url
        case EmailChannel():
            return channel.smtp.host
{grafana}        case _:
            assert_never(channel)
"""
GRAFANA_CASE = """        case GrafanaChannel():
            return channel.url
"""

EVENT_MATCH = """
from typing import assert_never
from crowdwatch.contracts.notification import NotificationEvent

def title(event: NotificationEvent) -> str:
    match event:
        case NotificationEvent.FIRING:
            return "alert"
        case NotificationEvent.RESOLVED:
            return "cleared"
{escalation}        case _:
            assert_never(event)
"""
ESCALATION_CASE = """        case NotificationEvent.ESCALATION:
            return "escalation"
"""

CASES = [
    ("every metric handled", METRIC_MATCH.format(density=DENSITY_CASE), None),
    ("a metric left out", METRIC_MATCH.format(density=""), "AlertMetric.DENSITY_PER_M2"),
    ("every channel type handled", CHANNEL_MATCH.format(grafana=GRAFANA_CASE), None),
    ("a channel type left out", CHANNEL_MATCH.format(grafana=""), "GrafanaChannel"),
    ("every notification event handled", EVENT_MATCH.format(escalation=ESCALATION_CASE), None),
    ("an event left out", EVENT_MATCH.format(escalation=""), "NotificationEvent.ESCALATION"),
]


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: the first run reads pydantic's stubs, the others reuse them."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.parametrize(("source", "missing"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_mypy_fails_on_a_match_that_misses_a_member(
    source: str, missing: str | None, tmp_path: Path, mypy_cache: Path
) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(source, encoding="utf-8")

    out, err, status = api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--no-error-summary",
            "--cache-dir",
            str(mypy_cache),
            "--config-file",
            str(Path(__file__).resolve().parents[1] / "pyproject.toml"),
            str(snippet),
        ]
    )

    if missing is None:
        assert (status, out) == (0, ""), err
    else:
        assert status == 1, out + err
        assert 'Argument 1 to "assert_never" has incompatible type' in out
        assert missing in out
