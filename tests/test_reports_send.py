"""The daily report sent as an image through the channels, to real local receivers."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from factories import make_config
from raw_rows import insert_lines, insert_zones
from report_history import DAY, line_rows, report_config_dict, zone_rows
from sinks import HttpSink, SmtpSink

from crowdwatch.contracts.config import CrowdwatchConfig, RetentionConfig
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.reports.sender import CLAIM_LEASE, due_days, prepare, send_due, send_report
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.report_sends import claim_day
from crowdwatch.storage.rollups import refresh_rollups

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(http_sink: HttpSink, smtp_port: int, **reports: object) -> CrowdwatchConfig:
    raw = report_config_dict()
    raw["alerts"] = {
        "channels": [
            {"id": "hook", "type": "webhook", "url": f"{http_sink.url}/hook"},
            {"id": "wx", "type": "wecom", "url": f"{http_sink.url}/cgi-bin/webhook/send?key=k"},
            {"id": "dd", "type": "dingtalk", "url": f"{http_sink.url}/robot/send?access_token=t"},
            {
                "id": "mail",
                "type": "email",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "from_addr": "cw@example.org",
                    "to": ["leaders@example.org"],
                },
            },
        ]
    }
    raw["reports"] |= {"channels": ["hook", "wx", "dd", "mail"], **reports}
    return make_config(raw)


def test_the_report_reaches_every_channel_as_an_image(
    db_url: str, http_sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    config = _config(http_sink, smtp_sink.port, public_url="https://cw.example.org/")
    upgrade(db_url, config)
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert_zones(conn, zone_rows())
        insert_lines(conn, line_rows())
        refresh_rollups(conn, retention=RetentionConfig(raw_days=3650, rollup_days=36500))

    results = send_report(config, prepare(config, db_url, DAY))
    assert results == {"hook": None, "wx": None, "dd": None, "mail": None}

    [hook] = http_sink.on("/hook")
    assert hook.body["schema"] == "crowdwatch.report/1"
    assert base64.b64decode(hook.body["png_base64"])[:8] == PNG_MAGIC
    assert hook.body["figures"]["total_visits"] == 76
    assert hook.body["url"] == "https://cw.example.org/reports/daily/2025-10-03"

    image, text = http_sink.on("/cgi-bin/webhook/send")
    png = base64.b64decode(image.body["image"]["base64"])
    assert png[:8] == PNG_MAGIC and image.body["image"]["md5"] == hashlib.md5(png).hexdigest()
    assert "全区游客 Visitors: 76 (+117.1% 较去年同期 vs last year)" in text.body["text"]["content"]

    [ding] = http_sink.on("/robot/send")
    assert (
        "![report](https://cw.example.org/reports/daily/2025-10-03.png)"
        in ding.body["markdown"]["text"]
    )

    [mail] = smtp_sink.wait_for(1)
    kinds = [part.get_content_type() for part in mail.iter_attachments()]
    assert kinds == ["image/png", "application/pdf"]
    assert "国庆节第3天" in str(mail["Subject"])


def test_dingtalk_without_a_public_url_fails_alone(
    db_url: str, http_sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    config = _config(http_sink, smtp_sink.port)
    upgrade(db_url, config)
    results = send_report(config, prepare(config, db_url, DAY))
    assert results["dd"] == "DingTalk shows images by link only: set reports.public_url"
    assert results["hook"] is None and results["wx"] is None and results["mail"] is None


def _local(day: int, hh: int, mm: int = 0) -> datetime:
    """``hh:mm`` on ``day`` October 2025 in Shanghai (UTC+8), as UTC."""
    return datetime(2025, 10, day, hh, mm, tzinfo=UTC) - timedelta(hours=8)


def _oct(*days: int) -> list[date]:
    return [date(2025, 10, d) for d in days]


@pytest.mark.parametrize(
    ("now", "last_sent", "due"),
    [
        (_local(3, 20, 59), None, []),
        (_local(3, 21), None, _oct(3)),  # the first ever: today only
        (_local(3, 23, 59), date(2025, 10, 3), []),  # sent already
        (_local(4, 0), date(2025, 10, 3), []),  # 00:00 the next day
        (_local(4, 21), date(2025, 10, 3), _oct(4)),
        (_local(5, 20), date(2025, 10, 3), _oct(4)),  # away on the 4th: sent, not skipped
        (_local(5, 21, 30), date(2025, 10, 3), _oct(4, 5)),
        (_local(12, 21), date(2025, 10, 1), _oct(6, 7, 8, 9, 10, 11, 12)),  # at most 7
    ],
)
def test_due_at_send_at_local_time(now: datetime, last_sent: date | None, due: list[date]) -> None:
    raw = report_config_dict()
    raw["reports"]["send_at"] = "21:00"
    assert due_days(make_config(raw), now, last_sent) == due


def _hook_config(http_sink: HttpSink) -> CrowdwatchConfig:
    raw = report_config_dict()
    raw["alerts"] = {
        "channels": [{"id": "hook", "type": "webhook", "url": f"{http_sink.url}/hook"}]
    }
    raw["reports"] |= {"channels": ["hook"], "send_at": "21:00"}
    return make_config(raw)


def _days_received(http_sink: HttpSink) -> list[str]:
    return [r.body["day"] for r in http_sink.on("/hook")]


def test_a_restarted_scheduler_neither_resends_nor_skips_a_day(
    db_url: str, http_sink: HttpSink
) -> None:
    config = _hook_config(http_sink)
    upgrade(db_url, config)
    # Each call is a scheduler as it starts: it knows only what the database holds.
    assert send_due(config, db_url, _local(3, 21, 1), "box:1") == _oct(3)
    assert send_due(config, db_url, _local(3, 21, 2), "box:2") == []  # restarted: not again
    assert send_due(config, db_url, _local(4, 8), "box:3") == []
    # Away from 8:00 on the 4th until 21:30 on the 5th: the 4th is sent first, then the 5th.
    assert send_due(config, db_url, _local(5, 21, 30), "box:4") == _oct(4, 5)
    assert _days_received(http_sink) == ["2025-10-03", "2025-10-04", "2025-10-05"]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT day, state, results FROM report_sends ORDER BY day").fetchall()
    assert rows == [(d, "sent", {"hook": None}) for d in _oct(3, 4, 5)]


def test_a_day_being_sent_elsewhere_is_left_until_its_claim_is_stale(
    db_url: str, http_sink: HttpSink
) -> None:
    config = _hook_config(http_sink)
    upgrade(db_url, config)
    now = _local(3, 21, 1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert claim_day(conn, date(2025, 10, 3), "standby:7", now, CLAIM_LEASE)
    assert send_due(config, db_url, now + timedelta(minutes=1), "box:1") == []
    assert _days_received(http_sink) == []
    # The standby died while sending: after the lease the day is taken over and sent.
    later = now + CLAIM_LEASE + timedelta(seconds=1)
    assert send_due(config, db_url, later, "box:1") == _oct(3)
    assert _days_received(http_sink) == ["2025-10-03"]


def test_a_day_that_cannot_be_drawn_is_given_back_and_stops_the_round(
    db_url: str, http_sink: HttpSink
) -> None:
    config = _hook_config(http_sink)
    upgrade(db_url, config)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO report_sends (day, state, holder, claimed_at, sent_at)"
            " VALUES ('2030-09-28', 'sent', 'old', now(), now())"
        )
    # 2030 is past the holiday calendar: the 29th cannot be drawn, so the 30th waits too.
    now = datetime(2030, 9, 30, 13, 30, tzinfo=UTC)
    with pytest.raises(ConfigError, match="2030"):
        send_due(config, db_url, now, "box:1")
    with psycopg.connect(db_url) as conn:
        days = conn.execute("SELECT day, state FROM report_sends ORDER BY day").fetchall()
    assert days == [(date(2030, 9, 28), "sent")]
    assert _days_received(http_sink) == []
