"""Dispatcher password hashes, from the standard library only (scrypt, or PBKDF2 to verify).

The config holds ``web.users[].password_hash``, never a password.  Make one with::

    python -m crowdwatch.dashboards.passwords            # asks twice, prints the hash
    echo -n 'secret' | python -m crowdwatch.dashboards.passwords --stdin

Format: ``scrypt$N$r$p$salt$hash`` (salt and hash in URL-safe base64).  scrypt's memory cost
makes guessing on a GPU expensive; ``pbkdf2_sha256$iterations$salt$hash`` is also accepted
for hashes made elsewhere (e.g. ``hashlib.pbkdf2_hmac`` one-liners).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32
# 16 MiB per check (128 * N * r): enough to hurt a guesser, small enough for a login.
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """The stored form of a password.

    Args:
        password: the password (any Unicode; encoded as UTF-8).
        n: scrypt cost (a power of two); tests may lower it.

    Returns:
        ``scrypt$N$r$p$salt$hash``.

    Example:
        >>> verify_password("sun", hash_password("sun", n=16))
        True
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=_MAXMEM,
        dklen=_DKLEN,
    )
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison).

    Args:
        password: what the user typed.
        stored: a hash from :func:`hash_password` or ``pbkdf2_sha256$...``.

    Returns:
        True on a match; False on a mismatch or a malformed hash (never raises).
    """
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            expected = _unb64(parts[5])
            digest = hashlib.scrypt(
                password.encode("utf-8"),
                salt=_unb64(parts[4]),
                n=n,
                r=r,
                p=p,
                maxmem=_MAXMEM,
                dklen=len(expected),
            )
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            expected = _unb64(parts[3])
            digest = hashlib.pbkdf2_hmac(
                "sha256", password.encode("utf-8"), _unb64(parts[2]), int(parts[1]), len(expected)
            )
        else:
            return False
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


def main(argv: list[str] | None = None) -> int:
    """Print the hash of a password read from the terminal (or stdin with ``--stdin``)."""
    parser = argparse.ArgumentParser(
        prog="python -m crowdwatch.dashboards.passwords",
        description="Print a password hash for web.users[].password_hash in the site config.",
    )
    parser.add_argument("--stdin", action="store_true", help="read the password from stdin")
    args = parser.parse_args(argv)
    if args.stdin:
        password = sys.stdin.read().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 2
    if len(password) < 8:
        print("a password needs at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
