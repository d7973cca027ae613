"""What the HTTP channels share: one JSON POST, the robots' refusal codes, log-safe URLs."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from crowdwatch.analytics.channels.errors import DeliveryError


def post_json(
    url: str, body: dict[str, Any], timeout: float, headers: dict[str, str] | None = None
) -> bytes:
    """POST ``body`` as UTF-8 JSON; any HTTP error, refusal or time-out is a DeliveryError."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DeliveryError(f"HTTP {exc.code} from {log_safe(url)}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"cannot POST to {log_safe(url)}: {reason}") from exc


def log_safe(url: str) -> str:
    """The URL without its query: robot URLs carry their secret key there."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def check_robot_answer(raw: bytes, field: str, url: str) -> None:
    """The robots answer HTTP 200 with ``errcode``/``code`` not 0 when they refuse a message."""
    try:
        answer = json.loads(raw or b"{}")
    except json.JSONDecodeError:
        return
    if isinstance(answer, dict) and answer.get(field, 0) not in (0, None):
        message = answer.get("errmsg") or answer.get("msg") or ""
        raise DeliveryError(
            f"{log_safe(url)} refused the message: {field} {answer[field]} {message}"
        )
