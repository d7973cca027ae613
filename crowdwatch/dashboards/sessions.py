"""Signed, expiring session tokens for dispatchers, and the CSRF token derived from each.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256(secret, payload))``; the
payload names the user, when it expires and a random nonce.  Nothing is stored on the server:
the HMAC proves the server issued it, the expiry bounds it, and a user removed from the
config is refused even with a valid token.  The same token works as a cookie (the
dispatcher page; ``HttpOnly; SameSite=Strict``) or as ``Authorization: Bearer`` (scripts).

Cookie-authenticated writes also need the CSRF token in ``X-CSRF-Token``: HMAC of the
session's nonce under a separate label, so it is tied to one session and useless without it.
SameSite=Strict already keeps other sites' forms from sending the cookie; the header is the
second lock for browsers or proxies that ignore SameSite.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crowdwatch.contracts.config import WebConfig, WebUser
from crowdwatch.contracts.errors import ConfigError

logger = logging.getLogger(__name__)

SECRET_ENV = "CROWDWATCH_WEB_SECRET"
MIN_SECRET_CHARS = 16


class AuthError(Exception):
    """A request's credentials are missing, forged, expired or not allowed.

    ``status`` is the HTTP status to answer with (401, 403, or 429 with ``retry_after_s``).
    """

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: who, until when, and its CSRF token."""

    user: WebUser
    expires_at: datetime
    csrf: str


def load_secret(*, warn: bool = True) -> bytes:
    """The signing secret from ``CROWDWATCH_WEB_SECRET``, or a random one for this process.

    Args:
        warn: log a warning when the variable is unset (pointless with no users configured).

    Returns:
        The key bytes.

    Raises:
        ConfigError: the variable is set but shorter than 16 characters.
    """
    value = os.environ.get(SECRET_ENV)
    if value is None:
        # Sessions then end when the process restarts; fine for a demo, not for a shift.
        if warn:
            logger.warning(
                "%s is not set: dispatcher logins end when the web server restarts", SECRET_ENV
            )
        return secrets.token_bytes(32)
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{SECRET_ENV}: expected at least {MIN_SECRET_CHARS} characters, got {len(value)}"
        )
    return value.encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and verifies session tokens for the users of one :class:`WebConfig`."""

    def __init__(self, web: WebConfig, secret: bytes) -> None:
        self._users = {u.name: u for u in web.users}
        self._ttl = timedelta(seconds=web.session_ttl_s)
        self._secret = secret

    def user(self, name: str) -> WebUser | None:
        """The configured user of that name, if any."""
        return self._users.get(name)

    def _mac(self, label: bytes, data: bytes) -> bytes:
        return hmac.new(self._secret, label + b"\0" + data, hashlib.sha256).digest()

    def issue(self, user: WebUser, now: datetime | None = None) -> tuple[str, Session]:
        """A new token for ``user``.

        Args:
            user: a configured user (already authenticated).
            now: issue time (default: now).

        Returns:
            The token and the session it stands for.
        """
        expires = (now or datetime.now(UTC)) + self._ttl
        payload = {"u": user.name, "exp": int(expires.timestamp()), "n": secrets.token_hex(12)}
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        token = f"{_b64(body)}.{_b64(self._mac(b'session', body))}"
        expires_at = datetime.fromtimestamp(payload["exp"], UTC)  # type: ignore[arg-type]
        return token, Session(user, expires_at, self._csrf(str(payload["n"])))

    def _csrf(self, nonce: str) -> str:
        return _b64(self._mac(b"csrf", nonce.encode("ascii")))

    def verify(self, token: str, now: datetime | None = None) -> Session:
        """The session a token stands for.

        Args:
            token: from a cookie or a bearer header.
            now: the instant to judge expiry at (default: now).

        Returns:
            The session.

        Raises:
            AuthError: 401 when the token is malformed, forged, expired or names a user no
                longer in the config.
        """
        body_b64, _, mac_b64 = token.partition(".")
        try:
            body, mac = _unb64(body_b64), _unb64(mac_b64)
        except ValueError as exc:
            raise AuthError(401, "invalid session token") from exc
        if not mac or not hmac.compare_digest(mac, self._mac(b"session", body)):
            raise AuthError(401, "invalid session token")
        try:
            payload = json.loads(body)
            name, exp, nonce = str(payload["u"]), int(payload["exp"]), str(payload["n"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError(401, "invalid session token") from exc
        expires_at = datetime.fromtimestamp(exp, UTC)
        if expires_at <= (now or datetime.now(UTC)):
            raise AuthError(401, "session expired, log in again")
        user = self._users.get(name)
        if user is None:
            raise AuthError(401, f"user {name!r} is no longer allowed")
        return Session(user, expires_at, self._csrf(nonce))

    def check_csrf(self, session: Session, header: str | None) -> None:
        """Refuse a cookie-authenticated write without the session's CSRF token.

        Raises:
            AuthError: 403 when the header is missing or wrong.
        """
        if header is None or not hmac.compare_digest(header.encode(), session.csrf.encode()):
            raise AuthError(403, "missing or wrong X-CSRF-Token header")
