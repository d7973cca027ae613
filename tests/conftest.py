"""Fixtures with the real services: a private PostgreSQL and mosquitto per test session.

Fixtures:
    pg_server    (session)  PgServer: ``.admin_url``, ``.create_database() -> url``,
                            ``.drop_database(url)``
    db_url       (function) URL of a fresh, empty database, dropped after the test
    timescale    (function) False, then True: the storage path a test migrates for; the True
                            variant skips unless the server preloads TimescaleDB
    timescale_problem (session) why the server cannot run the TimescaleDB path ("" if it can)
    mqtt_broker  (session)  MqttBroker: ``.host``, ``.port``, ``.stop(kill=False)``, ``.start()``
    mqtt_config  (function) MqttConfig for the broker, MQTT 5, a unique ``topic_prefix``
    shared_dir   (session)  the shared data folder (``CROWDWATCH_SHARED_DIR``), else skip
    yolo_weights (session)  the YOLO11n checkpoint in it (the counter's backbone), else skip
    browser      (module)   a Playwright Browser: Debian's headless Chromium
    screenshots  (session)  folder for page screenshots (test-artifacts/screenshots, not committed)
    http_sink    (function) a real local HTTP receiver for alert channels (tests/sinks.py)
    smtp_sink    (function) a real local SMTP receiver (tests/sinks.py)
    serve        (function) starts ``run_web`` for a config on a free port (tests/web_server.py)
    desk         (function) the guarded API served on a migrated database, and a connection

Environment:
    CROWDWATCH_TEST_DATABASE_URL  admin URL of a running PostgreSQL to create databases on
    CROWDWATCH_PG_BINDIR          bin folder of the PostgreSQL the private cluster runs (one
                                  with TimescaleDB installed gets it preloaded)
    CROWDWATCH_TEST_MQTT          ``host:port`` of a running broker (stop/start tests skip)

Every test also fails when it leaves a non-daemon thread (or an MqttClient's network thread)
running 2 s after it ends.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from cli_processes import processes  # noqa: F401 (the fixture of the end-to-end tests)
from services import (
    ExternalBroker,
    MosquittoBroker,
    MqttBroker,
    PgServer,
    ServiceUnavailable,
    start_pg_server,
    wait_for_threads,
)
from services.browser import CHROMIUM_ARGS, find_chromium
from services.mosquitto import find_binary
from sinks import http_sink, smtp_sink  # noqa: F401 (fixtures shared by the alert tests)
from web_server import desk, serve  # noqa: F401 (the fixtures of the web, page and auth tests)

from crowdwatch.contracts.config import MqttConfig, default_shared_dir
from crowdwatch.storage.migrate import timescale_support

if TYPE_CHECKING:
    from playwright.sync_api import Browser

THREAD_GRACE_S = 2.0

SERVICE_FIXTURES = frozenset(
    {
        "pg_server",
        "db_url",
        "mqtt_broker",
        "mqtt_config",
        "shared_dir",
        "browser",
        "screenshots",
        "services",
    }
)
"""Fixtures that start or need something outside the process: a test using one is marked
``services`` (PostgreSQL, the broker, the shared data sets, Chromium).  A module's own
fixture that starts such a thing requests :func:`services` to say so."""

SERVICE_MARKERS = frozenset({"services", "data", "e2e", "faults", "slow"})
"""Markers that imply ``services`` (a test marked so by hand needs no fixture to count)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a service, so ``pytest -m "not services"`` runs the rest."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        markers = {m.name for m in item.iter_markers()}
        if fixtures & SERVICE_FIXTURES or markers & SERVICE_MARKERS:
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def services() -> None:
    """Requested by a fixture that starts an outside service itself (its tests are marked)."""


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the session: our own, or CROWDWATCH_TEST_DATABASE_URL's."""
    try:
        server = start_pg_server(os.environ.get("CROWDWATCH_TEST_DATABASE_URL"))
    except ServiceUnavailable as exc:
        pytest.skip(f"no PostgreSQL for the tests: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def db_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, empty database, dropped (clients disconnected) after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture(scope="session")
def timescale_problem(pg_server: PgServer) -> str:
    """Why the test server cannot run the TimescaleDB path, with the fix; empty if it can."""
    with psycopg.connect(pg_server.admin_url, autocommit=True, connect_timeout=10) as conn:
        problem = timescale_support(conn).problem()
    if problem:
        return (
            f"no TimescaleDB path on the test server: {problem} (set CROWDWATCH_PG_BINDIR to "
            "a PostgreSQL with TimescaleDB installed, or CROWDWATCH_TEST_DATABASE_URL to a "
            "server that preloads it)"
        )
    return ""


@pytest.fixture(params=[False, True], ids=["plain", "timescale"])
def timescale(request: pytest.FixtureRequest, timescale_problem: str) -> bool:
    """Each storage path in turn: plain PostgreSQL, then TimescaleDB where the server has it."""
    wanted = bool(request.param)
    if wanted and timescale_problem:
        pytest.skip(timescale_problem)
    return wanted


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[MqttBroker]:
    """A mosquitto for the session: our own, or CROWDWATCH_TEST_MQTT's."""
    external = os.environ.get("CROWDWATCH_TEST_MQTT")
    broker: MqttBroker
    if external:
        broker = ExternalBroker.parse(external)
    else:
        try:
            broker = MosquittoBroker(find_binary())
        except ServiceUnavailable as exc:
            pytest.skip(f"no MQTT broker for the tests: {exc}")
        try:
            broker.start()
        except BaseException:
            broker.close()
            raise
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def mqtt_config(mqtt_broker: MqttBroker) -> MqttConfig:
    """Config for the test broker (MQTT 5) with a topic prefix no other test uses."""
    # A fault test that failed between stop() and start() must not break the tests after it.
    mqtt_broker.ensure_running()
    return MqttConfig(
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        protocol="5",
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        shared_group="ingest",
    )


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder holding data/ and models/, or skip the test."""
    folder = default_shared_dir()
    if not (folder / "data").is_dir():
        pytest.skip(
            f"shared data not found at {folder}; set CROWDWATCH_SHARED_DIR to the folder "
            "holding data/ and models/"
        )
    return folder


@pytest.fixture(scope="session")
def yolo_weights(shared_dir: Path) -> Path:
    """The YOLO11n checkpoint the crowd counter's backbone starts from, or skip the test."""
    path = shared_dir / "models" / "yolo11n_coco.pt"
    if not path.is_file():
        pytest.skip(f"YOLO11n checkpoint not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _no_lingering_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (autouse fixtures tear down last)."""
    before = set(threading.enumerate())
    yield
    left = wait_for_threads(before, THREAD_GRACE_S)
    if left:
        names = ", ".join(f"{t.name} (daemon={t.daemon})" for t in left)
        pytest.fail(
            f"the test left {len(left)} thread(s) running {THREAD_GRACE_S:g} s after it: {names}"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when non-daemon threads outlive the session (they would hang the exit)."""
    main = threading.main_thread()
    left = [t for t in wait_for_threads({main}, THREAD_GRACE_S) if not t.daemon]
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "non-daemon threads still running after the session: " + ", ".join(
            t.name for t in left
        )
        if reporter is not None:
            reporter.write_line(message, red=True)
        if exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium under Playwright, for one test module.

    Not for the whole session: Playwright's sync API keeps its event loop (in a greenlet) as
    the main thread's running loop while it is open, so a later test's ``asyncio.run`` would
    fail ("cannot be called from a running event loop"), and its greenlet switches upset
    CPython 3.11's recursion count (``compile`` then fails with "AST constructor recursion
    depth mismatch"). A launch per module costs a second or two.
    """
    # Imported here: the tests that need no browser start without loading Playwright.
    from playwright.sync_api import sync_playwright

    try:
        executable = find_chromium()
    except ServiceUnavailable as exc:
        pytest.skip(f"no browser for the page tests: {exc}")
    manager = sync_playwright()
    with manager as playwright:
        # Playwright's loop writes files through asyncio's default executor, which grows a
        # thread per concurrent call; one named thread, started in the warm-up, keeps the
        # lingering-thread check meaningful for the tests themselves.
        manager._loop.set_default_executor(
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright-io")
        )
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            _warm_up(chromium)
            yield chromium
        finally:
            chromium.close()


def _warm_up(chromium: Browser) -> None:
    """Let Playwright start its file-writing thread now, so no test is blamed for it lingering."""
    page = chromium.new_page()
    try:
        page.set_content("<p>ready</p>")
        with tempfile.TemporaryDirectory() as folder:
            page.screenshot(path=Path(folder) / "warm-up.png")
    finally:
        page.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where page tests leave screenshots for people to look at."""
    folder = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
