"""Generated mosquitto accounts and ACLs, checked against a real mosquitto started from them.

The second half connects our own :class:`MqttClient` (and a real ``crowdwatch ingest``
process) to that broker over TLS with per-device credentials.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import ssl
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
import yaml
from factories import config_dict, count_message, make_config, site_dict
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from services.components import CrowdwatchProcess
from services.mosquitto import find_binary

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.contracts.errors import BrokerError, ConfigError
from crowdwatch.contracts.messages import MAX_PACKET_BYTES, encode
from crowdwatch.devservices.host import (
    ServiceUnavailable,
    free_port,
    running_as_root,
    tail_file,
    wait_for_port,
)
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.security.mosquitto_config import (
    INGEST_USER,
    MosquittoFiles,
    TlsFiles,
    mqtt_accounts,
    read_credentials,
    write_mosquitto_files,
)

HOST = "127.0.0.1"
TIMEOUT_S = 10.0


def _district(prefix: str) -> CrowdwatchConfig:
    sites = [site_dict("stop-a", source="rtsp://10.0.0.1/a"), site_dict("stop-b", source="0")]
    sites.append(site_dict("stop-sim"))
    return make_config(config_dict(*sites), mqtt={"topic_prefix": prefix})


@dataclass
class SecuredBroker:
    port: int
    tls_port: int
    cert_port: int
    """A TLS listener that also requires a client certificate signed by the CA."""
    files: MosquittoFiles
    passwords: dict[str, str]
    cafile: Path
    prefix: str
    folder: Path
    """Holds client.crt/client.key (signed by the CA) and rogue-ca.crt (an unrelated CA)."""


def _make_certificates(folder: Path) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1, a client certificate, a rogue CA.

    EC keys: quick to make.
    """
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=crowdwatch test CA")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip
    openssl("req", *ec, "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=edge-stop-a-cam1")  # fmt: skip
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.crt", "-days", "1")  # fmt: skip
    openssl("req", "-x509", *ec, "-keyout", "rogue-ca.key", "-out", "rogue-ca.crt",
            "-days", "1", "-subj", "/CN=not our CA")  # fmt: skip
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")


@pytest.fixture(scope="module")
def secured_broker(
    services: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredBroker]:
    """mosquitto started from the files `crowdwatch security mosquitto-config` writes."""
    try:
        binary = find_binary()
    except ServiceUnavailable as exc:
        pytest.skip(f"no mosquitto: {exc}")
    folder = tmp_path_factory.mktemp("secured-mqtt")
    tls = _make_certificates(folder)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    port, tls_port, cert_port = free_port(HOST), free_port(HOST), free_port(HOST)
    files = write_mosquitto_files(
        _district(prefix), folder / "broker", port=port, bind=HOST, tls=tls, tls_port=tls_port
    )
    log = folder / "mosquitto.log"
    extra = f"log_dest file {log}\n" + ("user root\n" if running_as_root() else "")
    extra += (
        f"\nlistener {cert_port} {HOST}\ncafile {tls.cafile}\ncertfile {tls.certfile}\n"
        f"keyfile {tls.keyfile}\ntls_version tlsv1.2\nrequire_certificate true\n"
    )
    with files.config.open("a", encoding="utf-8") as handle:
        handle.write(extra)
    with log.open("ab") as early:
        proc = subprocess.Popen(
            [str(binary), "-c", str(files.config)], stdout=early, stderr=subprocess.STDOUT
        )
    try:
        for p in (port, tls_port, cert_port):
            if not wait_for_port(HOST, p, TIMEOUT_S, lambda: proc.poll() is None):
                pytest.fail(f"mosquitto did not listen on {p}:\n{tail_file(log)}")
        passwords = read_credentials(files.credentials)
        yield SecuredBroker(port, tls_port, cert_port, files, passwords, tls.cafile, prefix, folder)
    finally:
        proc.terminate()
        proc.wait(TIMEOUT_S)


class Probe:
    """A bare paho MQTT 5 client that records what the broker answers."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.port = port
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )  # fmt: skip
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.put(rc)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        self.client.on_subscribe = lambda _c, _u, _m, rcs, _p: self.subacks.put(list(rcs))
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))

    def connect(self) -> ReasonCode:
        self.client.connect(HOST, self.port)
        self.client.loop_start()
        return self.connack.get(timeout=TIMEOUT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)

    def subscribe(self, topic_filter: str) -> ReasonCode:
        self.client.subscribe(topic_filter, qos=1)
        (code,) = self.subacks.get(timeout=TIMEOUT_S)
        return code

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _connected(broker: SecuredBroker, username: str, *, tls: bool = False) -> Probe:
    probe = Probe(broker.tls_port if tls else broker.port, username, broker.passwords[username])
    if tls:
        probe.client.tls_set_context(ssl.create_default_context(cafile=str(broker.cafile)))
    code = probe.connect()
    if code.is_failure:
        probe.close()
        pytest.fail(f"{username} was refused: {code}")
    return probe


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    opened: list[Probe] = []
    yield opened
    for probe in opened:
        probe.close()


def test_every_real_camera_gets_its_own_account_and_the_simulator_the_rest() -> None:
    accounts = {a.username: a for a in mqtt_accounts(_district("cw"))}

    assert accounts["edge-stop-a-cam1"].write == ("cw/v1/stop-a/cam1/#",)
    assert accounts["edge-stop-a-cam1"].read == ()
    assert "edge-stop-sim-cam1" not in accounts
    assert accounts["crowdwatch-simulator"].write == ("cw/v1/stop-sim/cam1/#",)
    assert accounts[INGEST_USER].read == ("cw/v1/+/+/#",)


def test_cameras_that_would_share_a_username_are_refused() -> None:
    first, second = site_dict("a-b", source="0"), site_dict("a", source="1")
    second["cameras"][0]["id"] = "b-cam1"
    with pytest.raises(ConfigError, match="edge-a-b-cam1"):
        mqtt_accounts(make_config(config_dict(first, second)))


def test_credentials_file_is_private_and_password_file_holds_only_hashes(
    secured_broker: SecuredBroker,
) -> None:
    files = secured_broker.files
    assert stat.S_IMODE(files.credentials.stat().st_mode) == 0o600
    hashed = files.password_file.read_text(encoding="utf-8")
    assert all(password not in hashed for password in secured_broker.passwords.values())
    assert "allow_anonymous false" in files.config.read_text(encoding="utf-8")


def test_device_publishes_under_its_own_camera_but_not_as_another(
    secured_broker: SecuredBroker, probes: list[Probe]
) -> None:
    base = f"{secured_broker.prefix}/v1"
    ingest = _connected(secured_broker, INGEST_USER)
    probes.append(ingest)
    assert not ingest.subscribe(f"$share/ingest/{base}/+/+/#").is_failure
    device = _connected(secured_broker, "edge-stop-a-cam1")
    probes.append(device)

    device.publish(f"{base}/stop-b/cam1/counts", b"forged")
    device.publish(f"{base}/alerts/stop-b", b"forged alert")
    # Messages of one connection arrive in order: once this one is in, the forged ones would be.
    device.publish(f"{base}/stop-a/cam1/counts", b"genuine")

    assert ingest.messages.get(timeout=TIMEOUT_S) == (f"{base}/stop-a/cam1/counts", b"genuine")
    assert ingest.messages.empty()


@pytest.mark.parametrize(
    "topic_filter", ["#", "{base}/+/+/#", "{base}/stop-b/cam1/counts", "$share/ingest/{base}/#"]
)
def test_device_receives_nothing_whatever_it_subscribes_to(
    secured_broker: SecuredBroker, probes: list[Probe], topic_filter: str
) -> None:
    base = f"{secured_broker.prefix}/v1"
    device = _connected(secured_broker, "edge-stop-a-cam1")
    witness = _connected(secured_broker, INGEST_USER)
    other = _connected(secured_broker, "edge-stop-b-cam1")
    probes += [device, witness, other]
    # mosquitto 2.0 may grant a wildcard SUBACK and filter each message on delivery instead.
    device.subscribe(topic_filter.format(base=base))
    assert not witness.subscribe(f"{base}/+/+/counts").is_failure

    other.publish(f"{base}/stop-b/cam1/counts", b"counts of another camera")
    assert witness.messages.get(timeout=TIMEOUT_S)[1] == b"counts of another camera"
    # A round trip after the delivery: anything sent to the device arrives before this PUBACK.
    device.publish(f"{base}/stop-a/cam1/status", b"{}")

    assert device.messages.empty(), device.messages.get_nowait()


@pytest.mark.parametrize(
    ("username", "password"),
    [("edge-stop-a-cam1", "wrong"), ("edge-stop-a-cam1", ""), ("nobody", "x"), (None, None)],
)
def test_wrong_or_missing_credentials_are_refused(
    secured_broker: SecuredBroker, probes: list[Probe], username: str | None, password: str | None
) -> None:
    probe = Probe(secured_broker.port, username, password)
    probes.append(probe)

    code = probe.connect()

    assert code.is_failure
    assert code.getName() in {"Bad user name or password", "Not authorized"}


def test_device_publishes_over_tls_verified_against_the_ca(
    secured_broker: SecuredBroker, probes: list[Probe]
) -> None:
    base = f"{secured_broker.prefix}/v1"
    ingest = _connected(secured_broker, INGEST_USER, tls=True)
    probes.append(ingest)
    assert not ingest.subscribe(f"{base}/+/+/counts").is_failure
    device = _connected(secured_broker, "edge-stop-b-cam1", tls=True)
    probes.append(device)

    device.publish(f"{base}/stop-b/cam1/counts", b"over tls")

    assert ingest.messages.get(timeout=TIMEOUT_S) == (f"{base}/stop-b/cam1/counts", b"over tls")


def test_cli_writes_the_broker_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crowdwatch.cli import main

    code = main(["security", "mosquitto-config", "-c", "configs/district.example.yaml",
                 "--out", str(tmp_path / "b")])  # fmt: skip

    assert code == 0, capsys.readouterr().err
    acl = (tmp_path / "b" / "acl").read_text(encoding="utf-8")
    assert "user crowdwatch-ingest" in acl
    assert stat.S_IMODE((tmp_path / "b" / "credentials.tsv").stat().st_mode) == 0o600


def test_cli_refuses_half_a_tls_setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crowdwatch.cli import main

    code = main(["security", "mosquitto-config", "-c", "configs/district.example.yaml",
                 "--out", str(tmp_path), "--tls-cert", "server.crt"])  # fmt: skip

    assert code == 2
    assert "--tls-ca, --tls-cert and --tls-key go together" in capsys.readouterr().err


# --- our MqttClient over TLS with per-device credentials ------------------------------------

PASSWORD_ENV = "CW_TEST_MQTT_PASSWORD"


def _mqtt(
    broker: SecuredBroker, username: str, password: str | None = None, **settings: object
) -> MqttConfig:
    """The ``mqtt`` section as a site config gives it: TLS, the CA, the password from ${ENV}."""
    mqtt = {
        "host": HOST,
        "port": broker.tls_port,
        "topic_prefix": broker.prefix,
        "username": username,
        "password": "${%s}" % PASSWORD_ENV,  # noqa: UP031  (a literal ${...} for the config)
        "tls": True,
        "ca_file": str(broker.cafile),
        **settings,
    }
    os.environ[PASSWORD_ENV] = broker.passwords[username] if password is None else password
    try:
        return make_config(config_dict(site_dict()), mqtt=mqtt).mqtt
    finally:
        del os.environ[PASSWORD_ENV]


@pytest.fixture
def clients() -> Iterator[list[MqttClient]]:
    """Our clients of a test, closed after it."""
    opened: list[MqttClient] = []
    yield opened
    for client in opened:
        client.close()


def _client(clients: list[MqttClient], config: MqttConfig) -> MqttClient:
    client = MqttClient(config, client_id=f"tls-{uuid.uuid4().hex[:8]}")
    clients.append(client)
    return client


def test_our_client_publishes_over_tls_as_its_device_and_is_refused_another_cameras_topic(
    secured_broker: SecuredBroker, clients: list[MqttClient], caplog: pytest.LogCaptureFixture
) -> None:
    base = f"{secured_broker.prefix}/v1"
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    ingest = _client(clients, _mqtt(secured_broker, INGEST_USER))
    ingest.subscribe(f"{base}/+/+/#", lambda topic, payload: received.put((topic, payload)))
    ingest.connect()
    device = _client(clients, _mqtt(secured_broker, "edge-stop-a-cam1"))
    device.connect()

    with caplog.at_level(logging.ERROR, logger="crowdwatch.mqtt.client"):
        device.publish(f"{base}/stop-b/cam1/counts", b"forged")
    device.publish(f"{base}/stop-a/cam1/counts", b"genuine")

    # Messages of one connection arrive in order: once this one is in, the forged one would be.
    assert received.get(timeout=TIMEOUT_S) == (f"{base}/stop-a/cam1/counts", b"genuine")
    assert received.empty()
    assert device.refused == 1
    assert f"{base}/stop-b/cam1/counts" in caplog.text
    assert "Not authorized" in caplog.text


def test_the_password_comes_from_the_environment_and_is_never_logged(
    secured_broker: SecuredBroker, clients: list[MqttClient], caplog: pytest.LogCaptureFixture
) -> None:
    secret = secured_broker.passwords["edge-stop-a-cam1"]
    config = _mqtt(secured_broker, "edge-stop-a-cam1")
    wrong = _mqtt(secured_broker, "edge-stop-a-cam1", password="not-the-password")

    with caplog.at_level(logging.DEBUG):
        _client(clients, config).connect()
        with pytest.raises(BrokerError) as refused:
            _client(clients, wrong).connect()

    assert config.resolved_password() == secret
    port = secured_broker.tls_port
    assert f"connected to 127.0.0.1:{port} (TLS) as edge-stop-a-cam1" in caplog.text
    # mosquitto 2.0 answers a wrong password with "Not authorized", later ones "Bad user name ...".
    assert re.search(
        r"refused us as edge-stop-a-cam1: (Not authorized|Bad user name or password) \(check",
        str(refused.value),
    )
    for text in (caplog.text, str(refused.value), repr(config), config.model_dump_json()):
        assert secret not in text
        assert "not-the-password" not in text


@pytest.mark.parametrize("problem", ["missing", "not pem"])
def test_an_unusable_ca_file_is_a_config_error_naming_the_file(
    secured_broker: SecuredBroker, tmp_path: Path, problem: str
) -> None:
    ca = tmp_path / "ca.crt"
    if problem == "not pem":
        ca.write_text("this is not a certificate\n", encoding="utf-8")
    config = _mqtt(secured_broker, "edge-stop-a-cam1", ca_file=str(ca))

    with pytest.raises(ConfigError, match=r"mqtt\.ca_file: .*" + str(ca)):
        MqttClient(config, client_id="bad-ca")


def test_a_broker_certificate_from_another_ca_is_refused_naming_the_ca_file(
    secured_broker: SecuredBroker, clients: list[MqttClient]
) -> None:
    rogue = secured_broker.folder / "rogue-ca.crt"
    client = _client(clients, _mqtt(secured_broker, "edge-stop-a-cam1", ca_file=str(rogue)))

    with pytest.raises(BrokerError) as refused:
        client.connect()

    assert f"its TLS certificate is not accepted by the CA in {rogue}" in str(refused.value)
    assert not client.connected


def test_the_host_name_is_checked_unless_tls_insecure(
    secured_broker: SecuredBroker, clients: list[MqttClient]
) -> None:
    # The server certificate names only 127.0.0.1; "localhost" reaches it but does not match.
    strict = _client(clients, _mqtt(secured_broker, "edge-stop-a-cam1", host="localhost"))
    with pytest.raises(BrokerError, match="mismatch"):
        strict.connect()

    lax = _client(
        clients, _mqtt(secured_broker, "edge-stop-a-cam1", host="localhost", tls_insecure=True)
    )
    lax.connect()
    lax.publish(f"{secured_broker.prefix}/v1/stop-a/cam1/status", b"{}")
    assert lax.connected


def test_a_listener_that_requires_a_client_certificate_gets_ours(
    secured_broker: SecuredBroker, clients: list[MqttClient]
) -> None:
    port = secured_broker.cert_port
    without = _client(clients, _mqtt(secured_broker, "edge-stop-a-cam1", port=port))
    with pytest.raises(BrokerError, match=r"require a client certificate \(mqtt.cert_file\)"):
        without.connect(timeout=3)

    folder = secured_broker.folder
    config = _mqtt(
        secured_broker,
        "edge-stop-a-cam1",
        port=port,
        cert_file=str(folder / "client.crt"),
        key_file=str(folder / "client.key"),
    )
    with_cert = _client(clients, config)
    with_cert.connect()
    with_cert.publish(f"{secured_broker.prefix}/v1/stop-a/cam1/status", b"{}")
    assert with_cert.connected and with_cert.refused == 0


def test_a_client_key_that_does_not_match_is_a_config_error(
    secured_broker: SecuredBroker,
) -> None:
    folder = secured_broker.folder
    config = _mqtt(
        secured_broker,
        "edge-stop-a-cam1",
        cert_file=str(folder / "client.crt"),
        key_file=str(folder / "rogue-ca.key"),
    )
    with pytest.raises(ConfigError, match=str(folder / "client.crt")):
        MqttClient(config, client_id="bad-key")


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"ca_file": "ca.crt"}, "ca_file given but tls is false"),
        ({"tls_insecure": True}, "tls_insecure given but tls is false"),
        ({"tls": True, "key_file": "k.pem"}, "key_file needs cert_file"),
        ({"password": "x"}, "password needs username"),
    ],
)
def test_tls_and_credential_settings_are_checked(mqtt: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(config_dict(site_dict()), mqtt=mqtt)


@pytest.mark.e2e
def test_a_real_ingest_process_stores_a_device_message_it_received_over_tls(
    secured_broker: SecuredBroker, clients: list[MqttClient], db_url: str, tmp_path: Path
) -> None:
    """``crowdwatch ingest`` with its own account over TLS; the forged camera never arrives."""
    sites = [site_dict("stop-a", source="rtsp://10.0.0.1/a"), site_dict("stop-b", source="0")]
    raw = config_dict(*sites, site_dict("stop-sim"))
    raw["database"] = {"url": db_url}
    raw["mqtt"] = {
        "host": HOST,
        "port": secured_broker.tls_port,
        "topic_prefix": secured_broker.prefix,
        "username": INGEST_USER,
        "password": "${CW_TEST_INGEST_PASSWORD}",
        "tls": True,
        "ca_file": str(secured_broker.cafile),
    }
    config_path = tmp_path / "ingest.yaml"
    config_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    secret = secured_broker.passwords[INGEST_USER]
    log_path = tmp_path / "ingest.log"
    ingest = CrowdwatchProcess(
        ["ingest", "-c", str(config_path), "--worker", "tls-test"],
        log_path,
        env={"CW_TEST_INGEST_PASSWORD": secret},
        log_level="DEBUG",
    )
    ingest.start()
    base = f"{secured_broker.prefix}/v1"
    device = _client(clients, _mqtt(secured_broker, "edge-stop-a-cam1"))
    device.connect()
    try:
        stored: list[tuple[str]] = []
        deadline = time.monotonic() + 90
        # Publish until the ingest has subscribed and stored one (it may still be starting).
        while not stored:
            assert ingest.poll() is None, log_path.read_text(encoding="utf-8")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(encoding="utf-8")[-3000:]
            forged = count_message("stop-b", "cam1", count=7)
            device.publish(f"{base}/stop-b/cam1/counts", encode(forged))
            device.publish(f"{base}/stop-a/cam1/counts", encode(count_message("stop-a", "cam1")))
            time.sleep(0.5)
            with psycopg.connect(db_url) as conn:
                # The ingest creates the tables at its start.
                if conn.execute("SELECT to_regclass('zone_counts')").fetchone() != (None,):
                    stored = conn.execute("SELECT DISTINCT site_id FROM zone_counts").fetchall()
    finally:
        ingest.terminate()
    text = log_path.read_text(encoding="utf-8")

    assert stored == [("stop-a",)]
    assert device.refused > 0
    assert f"(TLS) as {INGEST_USER}" in text
    assert secret not in text


def test_a_payload_too_big_to_be_a_message_is_refused_by_the_broker(
    secured_broker: SecuredBroker, probes: list[Probe]
) -> None:
    base = f"{secured_broker.prefix}/v1"
    ingest = _connected(secured_broker, INGEST_USER)
    probes.append(ingest)
    assert not ingest.subscribe(f"$share/ingest/{base}/stop-a/cam1/counts").is_failure
    hostile = _connected(secured_broker, "edge-stop-a-cam1")
    probes.append(hostile)

    # Not waited for: the broker answers the oversized packet by closing the connection.
    hostile.client.publish(f"{base}/stop-a/cam1/counts", b"x" * (MAX_PACKET_BYTES + 1), qos=1)
    # Recorded by the callback: paho reconnects at once (and resends), so polling
    # is_connected() can miss the short time it is down.
    hostile.disconnects.get(timeout=TIMEOUT_S)
    hostile.close()
    genuine = _connected(secured_broker, "edge-stop-a-cam1")
    probes.append(genuine)
    genuine.publish(f"{base}/stop-a/cam1/counts", b"genuine")

    assert ingest.messages.get(timeout=TIMEOUT_S) == (f"{base}/stop-a/cam1/counts", b"genuine")
    assert ingest.messages.empty()
