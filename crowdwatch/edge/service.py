"""``run_edge``: one worker thread per camera, each with its own MQTT connection.

Everything that can be wrong at start is checked before any thread starts, in this order,
so a mistake fails with one clear error: camera keys (ConfigError), video files
(SourceError), detector weights and the crowd counter of cameras with zones in mode
dense/auto (ModelError), the broker (BrokerError).  After that nothing
stops a worker but ``stop`` or the end of a (non-looping) file: a lost stream is reopened,
a lost broker costs no counting, and with ``edge.spool`` no count messages either
(:mod:`crowdwatch.edge.spool`).
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import ExitStack

from crowdwatch.contracts.config import Camera, CrowdwatchConfig, Site
from crowdwatch.contracts.errors import BrokerError, ConfigError
from crowdwatch.contracts.messages import AVAILABLE_OFFLINE, TopicKind, camera_topic
from crowdwatch.edge.counting import uses_density
from crowdwatch.edge.dense import DensityCounter
from crowdwatch.edge.detector import load_detector
from crowdwatch.edge.source import open_camera
from crowdwatch.edge.spool import open_store_and_forward
from crowdwatch.edge.vehicles import road_detector
from crowdwatch.edge.worker import CameraWorker, Publish
from crowdwatch.mqtt.client import MqttClient

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
"""How long a QoS 1 publish waits for the broker's ack before the message counts as lost."""


def camera_key(site_id: str, camera_id: str) -> str:
    """``"site_id/camera_id"``, how cameras are named on the command line."""
    return f"{site_id}/{camera_id}"


def select_cameras(
    config: CrowdwatchConfig, camera_keys: list[str] | None
) -> list[tuple[Site, Camera]]:
    """The cameras an edge process should run.

    Args:
        config: the site config.
        camera_keys: ``"site_id/camera_id"`` keys, or ``None`` for every camera whose source
            is not ``simulated``.

    Returns:
        ``(site, camera)`` pairs in the order asked for (config order for ``None``).

    Raises:
        ConfigError: a key names no camera, names a simulated camera, or nothing is left.
    """
    by_key = {camera_key(site.id, cam.id): (site, cam) for site, cam in config.cameras()}
    if camera_keys is None:
        chosen = [(site, cam) for site, cam in by_key.values() if not cam.simulated]
        if not chosen:
            raise ConfigError("no camera to run: every camera in the config has source 'simulated'")
        return chosen
    chosen = []
    for key in camera_keys:
        if key not in by_key:
            known = ", ".join(k for k, (_, c) in by_key.items() if not c.simulated) or "none"
            raise ConfigError(
                f"unknown camera {key!r}: expected site_id/camera_id of a camera in the config "
                f"(real cameras: {known})"
            )
        site, cam = by_key[key]
        if cam.simulated:
            raise ConfigError(
                f"camera {key!r} has source 'simulated': the simulator publishes its counts, "
                "an edge worker needs a video source"
            )
        chosen.append((site, cam))
    if not chosen:
        raise ConfigError("no camera to run: the list of camera keys is empty")
    return chosen


def mqtt_publisher(client: MqttClient, timeout_s: float = PUBLISH_TIMEOUT_S) -> Publish:
    """Adapt an :class:`MqttClient` to the worker's ``publish(topic, payload, retain)``.

    While the client is disconnected it fails at once instead of queueing in paho, so a
    worker never stalls on a broker that is away (``edge.spool`` keeps what it refuses).

    Args:
        client: a connected client.
        timeout_s: wait this long for the broker's QoS 1 ack.

    Returns:
        The publish callable; it raises BrokerError when the message did not reach the broker.
    """

    def publish(topic: str, payload: bytes, retain: bool) -> None:
        if not client.connected:
            raise BrokerError(f"not connected to the MQTT broker, dropped a message on {topic}")
        client.publish(topic, payload, qos=1, retain=retain, timeout=timeout_s)

    return publish


def run_edge(
    config: CrowdwatchConfig, camera_keys: list[str] | None, stop: threading.Event
) -> None:
    """Count people in the selected cameras until ``stop`` is set (or every file has ended).

    Args:
        config: the site config (``detector``, ``edge``, ``mqtt`` sections and the cameras).
        camera_keys: ``"site_id/camera_id"`` keys; ``None`` runs every non-simulated camera.
        stop: set from another thread (a signal handler) to stop every worker.

    Raises:
        ConfigError: unknown or simulated camera key, or no ``detector`` section.
        SourceError: a video file is missing or cannot be decoded.
        ModelError: the detector weights or the crowd counter (the camera's ``dense_model``,
            else ``edge.dense.model``, for cameras with zones in mode dense or auto) are
            missing or unusable.
        BrokerError: the MQTT broker cannot be reached at start.
    """
    cameras = select_cameras(config, camera_keys)
    if config.detector is None:
        raise ConfigError("detector: the section is required to run cameras with a video source")
    # Each ONNX Runtime session spins its own thread pool: share the cores, don't oversubscribe.
    ort_threads = config.detector.threads or max(1, (os.cpu_count() or 1) // len(cameras))
    prefix = config.mqtt.topic_prefix
    with ExitStack() as stack:
        sources = [stack.enter_context(open_camera(cam)) for _, cam in cameras]
        detectors = [
            road_detector(
                load_detector(config.detector, threads=ort_threads, classes=cam.classes), cam
            )
            for _, cam in cameras
        ]
        dense = config.edge.dense
        counters = [
            DensityCounter(
                cam.crowd_counter_path(dense),
                threads=dense.threads or ort_threads,
                max_side=dense.max_side,
            )
            if uses_density(cam)
            else None
            for _, cam in cameras
        ]
        workers = []
        for (site, cam), source, detector, density in zip(
            cameras, sources, detectors, counters, strict=True
        ):
            available = camera_topic(prefix, site.id, cam.id, TopicKind.AVAILABLE)
            client = MqttClient(
                config.mqtt,
                f"crowdwatch-edge-{site.id}-{cam.id}",
                will=(available, AVAILABLE_OFFLINE.encode()),
            )
            stack.callback(client.close)
            client.connect()
            publish = mqtt_publisher(client)
            health = None
            if config.edge.spool is not None:
                forwarder = open_store_and_forward(publish, config.edge.spool, site.id, cam.id)
                stack.callback(forwarder.close)
                publish, health = forwarder, forwarder.health
            workers.append(
                CameraWorker(
                    site.id,
                    cam,
                    source,
                    detector,
                    publish,
                    topic_prefix=prefix,
                    interval_s=config.edge.interval_s,
                    detect_every=config.edge.detect_every,
                    tracking=config.edge.tracking,
                    snapshot=config.edge.debug_snapshot,
                    health=health,
                    density=density,
                    dense=dense,
                    detector_config=config.detector,
                )
            )
        threads = [
            threading.Thread(
                target=_run_worker,
                args=(worker, stop),
                name=f"edge {worker.site_id}/{worker.camera.id}",
            )
            for worker in workers
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            # Ctrl-C in the join: stop the workers before their sources and clients close.
            stop.set()
            for thread in threads:
                thread.join()
            raise


def _run_worker(worker: CameraWorker, stop: threading.Event) -> None:
    try:
        worker.run(stop)
    except Exception:
        # One camera's bug must not take the others down; the worker already said offline.
        logger.exception("camera %s/%s: worker failed", worker.site_id, worker.camera.id)
