"""The daily report sent as an image through the channels, to real local receivers."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime

import psycopg
import pytest
from factories import make_config
from raw_rows import insert_lines, insert_zones
from report_history import DAY, line_rows, report_config_dict, zone_rows
from sinks import HttpSink, SmtpSink

from crowdwatch.contracts.config import CrowdwatchConfig, RetentionConfig
from crowdwatch.reports.sender import due_day, prepare, send_report
from crowdwatch.storage.migrate import upgrade
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


@pytest.mark.parametrize(
    ("now", "last_sent", "due"),
    [
        (datetime(2025, 10, 3, 12, 59, tzinfo=UTC), None, None),  # 20:59 local
        (datetime(2025, 10, 3, 13, 0, tzinfo=UTC), None, date(2025, 10, 3)),  # 21:00 local
        (datetime(2025, 10, 3, 15, 59, tzinfo=UTC), date(2025, 10, 3), None),  # sent already
        (datetime(2025, 10, 3, 16, 0, tzinfo=UTC), date(2025, 10, 3), None),  # 00:00 next day
    ],
)
def test_due_at_send_at_local_time(now: datetime, last_sent: date | None, due: date | None) -> None:
    raw = report_config_dict()
    raw["reports"]["send_at"] = "21:00"
    assert due_day(make_config(raw), now, last_sent) == due
