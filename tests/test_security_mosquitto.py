"""Generated mosquitto accounts and ACLs, checked against a real mosquitto started from them."""

from __future__ import annotations

import queue
import ssl
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from factories import config_dict, make_config, site_dict
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from services.mosquitto import find_binary

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.devservices.host import (
    ServiceUnavailable,
    free_port,
    running_as_root,
    tail_file,
    wait_for_port,
)
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
    files: MosquittoFiles
    passwords: dict[str, str]
    cafile: Path
    prefix: str


def _make_certificates(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 (EC keys: quick to make)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=crowdwatch test CA")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """mosquitto started from the files `crowdwatch security mosquitto-config` writes."""
    try:
        binary = find_binary()
    except ServiceUnavailable as exc:
        pytest.skip(f"no mosquitto: {exc}")
    folder = tmp_path_factory.mktemp("secured-mqtt")
    tls = _make_certificates(folder)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    port, tls_port = free_port(HOST), free_port(HOST)
    files = write_mosquitto_files(
        _district(prefix), folder / "broker", port=port, bind=HOST, tls=tls, tls_port=tls_port
    )
    log = folder / "mosquitto.log"
    extra = f"log_dest file {log}\n" + ("user root\n" if running_as_root() else "")
    with files.config.open("a", encoding="utf-8") as handle:
        handle.write(extra)
    with log.open("ab") as early:
        proc = subprocess.Popen(
            [str(binary), "-c", str(files.config)], stdout=early, stderr=subprocess.STDOUT
        )
    try:
        for p in (port, tls_port):
            if not wait_for_port(HOST, p, TIMEOUT_S, lambda: proc.poll() is None):
                pytest.fail(f"mosquitto did not listen on {p}:\n{tail_file(log)}")
        yield SecuredBroker(
            port, tls_port, files, read_credentials(files.credentials), tls.cafile, prefix
        )
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
