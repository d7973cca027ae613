"""Signed, expiring session tokens for dispatchers, and the CSRF token derived from each.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256(secret, payload))``; the
payload names the user, when it expires, a random nonce and a fingerprint of the user's
password hash.  The HMAC proves the server issued it, the expiry bounds it, a user removed
from the config is refused even with a valid token, and so is every token issued before the
user's password changed (the fingerprint no longer matches).  The same token works as a
cookie (the dispatcher page; ``HttpOnly; SameSite=Strict``) or as ``Authorization: Bearer``.

**Logout ends the session on the server**: :meth:`SessionSigner.revoke` remembers the
token's nonce until the token would have expired, and :meth:`SessionSigner.verify` refuses
it from then on, cookie or bearer.  The list is in the web process's memory (a few dozen
bytes per logout, expired entries dropped); a restart forgets it, so a token logged out
before a restart with the same ``CROWDWATCH_WEB_SECRET`` is good again until it expires:
change the secret to end every session at once.

A **device cookie** (:meth:`SessionSigner.issue_device`) marks a browser where a user has
logged in correctly; the login limiter trusts it for that user only (see
:mod:`crowdwatch.dashboards.login_limits`).

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
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crowdwatch.contracts.config import WebConfig, WebUser
from crowdwatch.contracts.errors import ConfigError

logger = logging.getLogger(__name__)

SECRET_ENV = "CROWDWATCH_WEB_SECRET"
MIN_SECRET_CHARS = 16
DEVICE_TTL = timedelta(days=180)


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
    nonce: str


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
        # nonce -> expiry of the logged-out token; read on the loop, written from threads too.
        self._revoked: dict[str, datetime] = {}
        self._revoked_lock = threading.Lock()

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
        exp, nonce = int(expires.timestamp()), secrets.token_hex(12)
        payload = {"u": user.name, "exp": exp, "n": nonce, "p": self._fingerprint(user)}
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        token = f"{_b64(body)}.{_b64(self._mac(b'session', body))}"
        expires_at = datetime.fromtimestamp(exp, UTC)
        return token, Session(user, expires_at, self._csrf(nonce), nonce)

    def _fingerprint(self, user: WebUser) -> str:
        """A short MAC of the user's password hash: a new password ends the old tokens."""
        return _b64(self._mac(b"password", user.password_hash.encode("utf-8"))[:9])

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
            fingerprint = str(payload["p"])
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
            raise AuthError(401, "invalid session token") from exc
        if expires_at <= (now or datetime.now(UTC)):
            raise AuthError(401, "session expired, log in again")
        user = self._users.get(name)
        if user is None:
            raise AuthError(401, f"user {name!r} is no longer allowed")
        if not hmac.compare_digest(fingerprint, self._fingerprint(user)):
            raise AuthError(401, "the password changed since this login; log in again")
        with self._revoked_lock:
            if nonce in self._revoked:
                raise AuthError(401, "logged out; log in again")
        return Session(user, expires_at, self._csrf(nonce), nonce)

    def revoke(self, session: Session, now: datetime | None = None) -> None:
        """End ``session`` on the server: its token is refused from now on (logout).

        Args:
            session: a verified session.
            now: the current instant (default: now); logouts of expired tokens are dropped.
        """
        now = now or datetime.now(UTC)
        with self._revoked_lock:
            for nonce in [n for n, exp in self._revoked.items() if exp <= now]:
                del self._revoked[nonce]  # refused for its expiry anyway
            self._revoked[session.nonce] = session.expires_at

    def issue_device(self, user: WebUser, now: datetime | None = None) -> str:
        """A device cookie's value for a browser where ``user`` just logged in correctly.

        Returns:
            ``base64url(name "\n" id "\n" expiry) "." MAC``: bound to that user, 180 days.
        """
        expires = int(((now or datetime.now(UTC)) + DEVICE_TTL).timestamp())
        body = f"{user.name}\n{secrets.token_hex(12)}\n{expires}".encode()
        return f"{_b64(body)}.{_b64(self._mac(b'device', body))}"

    def device_id(self, cookie: str | None, name: str, now: datetime | None = None) -> str | None:
        """The id of a valid device cookie issued for ``name``; None for anything else.

        A missing, forged, expired or other user's cookie is simply not trusted: never an
        error, so a stale cookie cannot stop a login.
        """
        if not cookie:
            return None
        body_b64, _, mac_b64 = cookie.partition(".")
        try:
            body, mac = _unb64(body_b64), _unb64(mac_b64)
            owner, device, expires = body.decode("utf-8").split("\n")
            expired = int(expires) <= (now or datetime.now(UTC)).timestamp()
        except ValueError:
            return None
        if not mac or not hmac.compare_digest(mac, self._mac(b"device", body)):
            return None
        return device if owner == name and not expired else None

    def check_csrf(self, session: Session, header: str | None) -> None:
        """Refuse a cookie-authenticated write without the session's CSRF token.

        Raises:
            AuthError: 403 when the header is missing or wrong.
        """
        if header is None or not hmac.compare_digest(header.encode(), session.csrf.encode()):
            raise AuthError(403, "missing or wrong X-CSRF-Token header")
