"""Login rate limiting: the limiter's windows, and 429 + Retry-After from the real web server.

Items 4 and 5 of issue 15: concurrent guesses must not beat the limit, and strangers must not
be able to lock the real dispatcher out.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from web_server import PASSWORD, Serve, web_config

from crowdwatch.dashboards.login_limits import MAX_KEYS, LoginLimiter
from crowdwatch.dashboards.sessions import AuthError, SessionSigner


class Clock:
    """Seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(
    limiter: LoginLimiter, times: int, name: str, address: str, device: str | None = None
) -> None:
    for _ in range(times):
        limiter.failed(limiter.reserve(name, address, device))


@pytest.mark.parametrize(
    ("name", "address", "device", "refused"),
    [
        ("li", "10.0.0.1", None, True),  # the guessing address, whatever the name
        ("wang", "10.0.0.1", None, True),
        ("li", "10.0.0.2", None, False),  # the name from elsewhere: 5 of its 20 an hour
        ("wang", "10.0.0.2", None, False),
        ("li", "10.0.0.1", "li-phone", False),  # the real user's known device, even there
    ],
)
def test_five_failures_throttle_the_address_but_not_a_known_device(
    name: str, address: str, device: str | None, refused: bool
) -> None:
    limiter = LoginLimiter(max_failures=5, window_s=300, clock=Clock())
    _fail(limiter, 5, "li", "10.0.0.1")

    if refused:
        with pytest.raises(AuthError) as caught:
            limiter.reserve(name, address, device)
        assert (caught.value.status, caught.value.retry_after_s) == (429, 300)
    else:
        limiter.reserve(name, address, device)


def test_the_window_slides_and_success_gives_the_slot_back() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=5, window_s=300, clock=clock)
    _fail(limiter, 4, "li", "10.0.0.1")
    clock.now += 100
    _fail(limiter, 1, "li", "10.0.0.1")

    clock.now += 199.5  # the first four failures are 0.5 s from leaving the window
    with pytest.raises(AuthError) as caught:
        limiter.reserve("li", "10.0.0.1")
    assert caught.value.retry_after_s == 1
    clock.now += 0.5
    _fail(limiter, 3, "li", "10.0.0.1")

    right = limiter.reserve("li", "10.0.0.1")  # the fifth booking of the window
    limiter.succeeded(right)  # ... given back: a right password is no failure
    limiter.succeeded(limiter.reserve("zhao", "10.0.0.1"))
    with pytest.raises(AuthError):  # but the address's own failures stay
        _fail(limiter, 2, "zhao", "10.0.0.1")


def test_concurrent_guesses_are_booked_before_the_password_is_checked() -> None:
    """Item 4: forty guesses in flight at once: five get a password check, 35 a 429."""
    limiter = LoginLimiter(max_failures=5, window_s=300, clock=Clock())

    in_flight, refused = [], 0
    for _ in range(40):  # none has had its verdict yet: all are inside the scrypt wait
        try:
            in_flight.append(limiter.reserve("li", "10.0.0.1"))
        except AuthError:
            refused += 1

    assert (len(in_flight), refused) == (5, 35)


def test_a_stranger_cannot_lock_the_real_user_out_of_a_known_device() -> None:
    """Item 5: strangers from many addresses fill the name's window; the user logs in."""
    clock = Clock()
    limiter = LoginLimiter(max_failures=5, window_s=300, name_failures=20, clock=clock)
    for i in range(4):  # four addresses, five guesses each: the name's hourly 20
        _fail(limiter, 5, "li", f"10.0.1.{i}")
    with pytest.raises(AuthError) as caught:  # a fifth address: the name's window is full
        limiter.reserve("li", "10.0.1.99")
    assert 3590 <= (caught.value.retry_after_s or 0) <= 3600

    for address in ["10.0.1.0", "10.0.2.7", "192.168.5.5"]:  # any network, a known device
        limiter.succeeded(limiter.reserve("li", address, device="li-phone"))
    _fail(limiter, 5, "li", "10.0.3.3", device="stolen-cookie")  # a device's own window
    with pytest.raises(AuthError):
        limiter.reserve("li", "10.0.3.3", device="stolen-cookie")
    limiter.succeeded(limiter.reserve("li", "10.0.3.3", device="li-phone"))


def test_the_number_of_keys_is_bounded() -> None:
    limiter = LoginLimiter(clock=Clock())
    for i in range(MAX_KEYS + 50):
        limiter.failed(limiter.reserve(f"name-{i}", f"addr-{i}"))  # two new keys each

    assert limiter.tracked_keys <= MAX_KEYS


def test_the_sixth_login_after_five_wrong_passwords_is_429_even_when_right(
    db_url: str,
    serve: Serve,
) -> None:
    http = serve(web_config(db_url))
    for _ in range(5):
        wrong = http.post("/api/login", json={"name": "li", "password": "guess"})
        assert wrong.status_code == 401, wrong.text

    throttled = http.post("/api/login", json={"name": "li", "password": PASSWORD})
    token = http.post("/api/token", json={"name": "li", "password": PASSWORD})

    assert throttled.status_code == 429, throttled.text
    assert throttled.json() == {"error": "too many failed logins; try again later"}
    assert 290 <= int(throttled.headers["Retry-After"]) <= 300
    assert "set-cookie" not in throttled.headers
    assert token.status_code == 429


def test_a_right_password_within_the_limit_logs_in(
    db_url: str,
    serve: Serve,
) -> None:
    http = serve(web_config(db_url))
    for _ in range(4):
        assert http.post("/api/login", json={"name": "li", "password": "x"}).status_code == 401

    assert http.post("/api/login", json={"name": "li", "password": PASSWORD}).status_code == 200


def _client_from(http: httpx.Client, address: str) -> httpx.Client:
    """A client of the same server connecting from another loopback address."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=http.base_url, timeout=10, transport=transport)


def test_forty_wrong_passwords_at_once_get_five_checks_and_35_refusals(
    db_url: str,
    serve: Serve,
) -> None:
    """Item 4: the probe sent 40 at once and all 40 got a 401 (no 429)."""
    http = serve(web_config(db_url))
    barrier = threading.Barrier(40)

    def guess(i: int) -> int:
        barrier.wait()
        body = {"name": "li", "password": f"guess-{i}"}
        return http.post("/api/login", json=body).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = Counter(pool.map(guess, range(40)))

    assert statuses == Counter({401: 5, 429: 35})


def test_strangers_on_many_addresses_do_not_lock_out_the_user_on_a_known_device(
    db_url: str,
    serve: Serve,
) -> None:
    """Item 5: five wrong tries kept the real dispatcher at 429 from any address."""
    http = serve(web_config(db_url))
    first = http.post("/api/login", json={"name": "li", "password": PASSWORD})
    assert first.status_code == 200 and "cw_device=" in first.headers["set-cookie"]
    device = {"cw_device": http.cookies["cw_device"]}

    for i in range(2, 6):  # four strangers, five wrong guesses each: the name's 20 an hour
        with _client_from(http, f"127.0.0.{i}") as stranger:
            for _ in range(5):
                guess = stranger.post("/api/login", json={"name": "li", "password": "x"})
                assert guess.status_code == 401
    with _client_from(http, "127.0.0.6") as sixth:
        unknown = sixth.post("/api/login", json={"name": "li", "password": PASSWORD})
    with _client_from(http, "127.0.0.7") as phone:  # the user's phone on another network
        phone.cookies.update(device)
        known = phone.post("/api/login", json={"name": "li", "password": PASSWORD})
        token = phone.post("/api/token", json={"name": "li", "password": PASSWORD})

    assert unknown.status_code == 429  # a browser never seen must wait out the window
    assert known.status_code == 200, known.text
    assert token.status_code == 200, token.text


def test_only_a_valid_unexpired_device_cookie_of_that_user_is_trusted() -> None:
    signer = SessionSigner(web_config().web, b"k" * 32)
    li, wang = signer.user("li"), signer.user("wang")
    assert li is not None and wang is not None
    issued = datetime(2026, 10, 1, tzinfo=UTC)
    cookie = signer.issue_device(li, now=issued)
    other_secret = SessionSigner(web_config().web, b"j" * 32).issue_device(li, now=issued)

    assert signer.device_id(cookie, "li", now=issued) is not None
    for value, name, at in [
        (cookie, "wang", issued),  # another user's device
        (signer.issue_device(wang, now=issued), "li", issued),
        (cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"), "li", issued),  # forged
        (other_secret, "li", issued),
        (cookie, "li", issued + timedelta(days=181)),  # expired
        ("garbage", "li", issued),
        ("", "li", issued),
        (None, "li", issued),
    ]:
        assert signer.device_id(value, name, now=at) is None, (value, name)
