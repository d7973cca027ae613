"""Login rate limiting: the limiter's window, and 429 + Retry-After from the real web server."""

from __future__ import annotations

import pytest
from web_server import PASSWORD, Serve, web_config

from crowdwatch.dashboards.login_limits import LoginLimiter
from crowdwatch.dashboards.sessions import AuthError


class Clock:
    """Seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(limiter: LoginLimiter, times: int, name: str, address: str) -> None:
    for _ in range(times):
        limiter.check(name, address)
        limiter.record_failure(name, address)


@pytest.mark.parametrize(
    ("name", "address", "refused"),
    [
        ("li", "10.0.0.1", True),  # the same name and address
        ("li", "10.0.0.2", True),  # the guessed name from another address
        ("wang", "10.0.0.1", True),  # another name from the guessing address
        ("wang", "10.0.0.2", False),  # neither
    ],
)
def test_five_failures_throttle_the_name_and_the_address(
    name: str, address: str, refused: bool
) -> None:
    limiter = LoginLimiter(max_failures=5, window_s=300, clock=Clock())
    _fail(limiter, 5, "li", "10.0.0.1")

    if refused:
        with pytest.raises(AuthError) as caught:
            limiter.check(name, address)
        assert (caught.value.status, caught.value.retry_after_s) == (429, 300)
    else:
        limiter.check(name, address)


def test_the_window_slides_and_success_clears_only_the_name() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=5, window_s=300, clock=clock)
    _fail(limiter, 4, "li", "10.0.0.1")
    clock.now += 100
    _fail(limiter, 1, "li", "10.0.0.1")

    clock.now += 199.5  # the first four failures are 0.5 s from leaving the window
    with pytest.raises(AuthError) as caught:
        limiter.check("li", "10.0.0.9")
    assert caught.value.retry_after_s == 1
    clock.now += 0.5
    limiter.check("li", "10.0.0.9")

    _fail(limiter, 4, "li", "10.0.0.1")
    limiter.record_success("li")
    limiter.check("li", "10.0.0.9")
    with pytest.raises(AuthError):
        limiter.check("zhao", "10.0.0.1")


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
