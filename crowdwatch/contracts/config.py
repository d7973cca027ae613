"""The site config: one YAML file describes the district and every process's settings.

Each YAML section is one pydantic model with ``extra="forbid"``; cross-field rules are small
validators.  ``load_config`` turns any mistake into a :class:`ConfigError` whose message names
the YAML path (``sites[2].cameras[0].zones[1].polygon: ...``) so a process refuses to start with
one clear line.

Geometry (zone polygons, counting lines) is stored in the pixel coordinates of the camera's
configured ``frame_size``; the edge converts it once when a stream's real frame size differs.
"""

from __future__ import annotations

import os
import re
import sysconfig
from datetime import date
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from crowdwatch.contracts.channels import (
    CHANNEL_TYPE_ERROR,
    channel_type_problem,
    without_channel_tag,
)

# The channel section's models live in their own module; re-exported for existing imports.
from crowdwatch.contracts.channels import AlertChannel as AlertChannel
from crowdwatch.contracts.channels import ChannelType as ChannelType
from crowdwatch.contracts.channels import SmtpConfig as SmtpConfig
from crowdwatch.contracts.congestion import GB_T_33171, RoadClass, SpeedThresholds
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.ids import ID_PATTERN as ID_PATTERN
from crowdwatch.contracts.ids import Identifier as Identifier
from crowdwatch.contracts.reports import ReportsConfig

Point = tuple[float, float]


class Model(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteKind(StrEnum):
    BUS_STOP = "bus_stop"
    BEACH = "beach"
    ROAD = "road"
    SCENIC_SPOT = "scenic_spot"


class Department(StrEnum):
    TRANSPORT = "transport"
    CULTURE_TOURISM = "culture_tourism"
    TRAFFIC_POLICE = "traffic_police"
    PUBLIC_SECURITY = "public_security"


class LocalizedName(Model):
    zh: str = Field(min_length=1, max_length=100, description="Chinese name, shown first")
    en: str = Field(min_length=1, max_length=100, description="English name")


class Location(Model):
    lat: float = Field(ge=-90, le=90, description="latitude, WGS84 degrees")
    lon: float = Field(ge=-180, le=180, description="longitude, WGS84 degrees")


class CountMode(StrEnum):
    """How a zone's people are counted (``zones[].mode``)."""

    DETECT = "detect"
    """a box per person from the detector (tracks, lines and waits come from these)"""
    DENSE = "dense"
    """the crowd counter's density map summed over the zone (packed crowds, tiny people)"""
    AUTO = "auto"
    """density where detection fails, detection elsewhere: see :class:`DenseAutoConfig`"""


class Approach(Model):
    """A road zone that is a stop line's approach: where a queue stands (``zones[].approach``).

    The queue length is the ground distance from the stop line back to the farthest
    stationary vehicle of the queue that starts at the line (:mod:`crowdwatch.edge.queue`).
    """

    stop_line: tuple[Point, Point] = Field(
        description="the stop line's two ends, pixels of the camera's frame_size"
    )

    @field_validator("stop_line")
    @classmethod
    def _two_points(cls, line: tuple[Point, Point]) -> tuple[Point, Point]:
        if line[0] == line[1]:
            raise ValueError("the stop line's two ends must differ")
        return line


class Zone(Model):
    """An area of a camera's view where people are counted (a platform, a beach section)."""

    id: Identifier
    name: LocalizedName
    polygon: list[Point] = Field(description="vertices in pixels of the camera's frame_size")
    capacity: int | None = Field(default=None, gt=0, le=1_000_000, description="people at 100%")
    mode: CountMode = Field(
        default=CountMode.DETECT,
        description="detect | dense | auto: count by boxes, by density map, or pick per frame",
    )
    max_per_m2: float | None = Field(
        default=None,
        gt=0,
        le=20,
        description="most people per m² this ground holds (a beach fewer than a platform); "
        "null: edge.plausibility.max_per_m2; needs the camera's calibration",
    )
    lanes: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="road zones: lanes the zone covers (density in vehicles per km per lane); "
        "null: no density",
    )
    length_m: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="road zones: the zone's length along the road in metres; null: measured "
        "from the camera's calibration (needed when it has none)",
    )
    approach: Approach | None = Field(
        default=None,
        description="road zones: the zone is a stop line's approach; its queue length is "
        "published (needs the camera's calibration)",
    )

    @field_validator("polygon")
    @classmethod
    def _at_least_three_points(cls, polygon: list[Point]) -> list[Point]:
        if len(polygon) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}")
        return polygon


class TrackedClass(StrEnum):
    PERSON = "person"
    BICYCLE = "bicycle"
    CAR = "car"
    MOTORCYCLE = "motorcycle"
    BUS = "bus"
    TRUCK = "truck"


class CountingLine(Model):
    """A line people cross; ``in_direction`` is the vector that counts as "in"."""

    id: Identifier
    name: LocalizedName
    start: Point
    end: Point
    in_direction: Point = Field(description="direction of travel that counts as 'in', pixels")
    lanes: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="road lines: lanes the line crosses (flow in vehicles per hour per lane); "
        "null: no flow per lane",
    )
    classes: list[TrackedClass] | None = Field(
        default=None,
        min_length=1,
        description="count only tracks of these classes (e.g. [bus]: buses per hour on a road "
        "line, beside an all-vehicle line); null: every class the camera counts",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_classes(cls, data: Any) -> Any:
        # Said here rather than by the enum, so the message names the line and the choices.
        if isinstance(data, dict) and isinstance(data.get("classes"), list):
            known = [c.value for c in TrackedClass]
            for name in data["classes"]:
                if name not in known:
                    raise ValueError(
                        f"line {data.get('id')!r}: unknown class {name!r} in classes, "
                        f"expected one of {', '.join(known)}"
                    )
        return data

    @model_validator(mode="after")
    def _non_degenerate(self) -> Self:
        if self.start == self.end:
            raise ValueError("start and end of a counting line must differ")
        if self.in_direction == (0.0, 0.0):
            raise ValueError("in_direction must not be the zero vector")
        return self


class Calibration(Model):
    """Four image points and where they lie on the ground, in metres: a homography.

    Used for density (people per m²) and real distances; pick four well-spread ground marks
    (kerb corners, painted lines) that a surveyor or a map gives in metres.
    """

    image_points: list[Point] = Field(description="4 pixel points in the camera's frame_size")
    ground_points_m: list[Point] = Field(description="the same 4 points on the ground, metres")

    @model_validator(mode="after")
    def _four_spread_points(self) -> Self:
        for name, points in (
            ("image_points", self.image_points),
            ("ground_points_m", self.ground_points_m),
        ):
            if len(points) != 4:
                raise ValueError(f"{name} needs exactly 4 points, got {len(points)}")
            for i in range(4):
                a, b, c = points[i], points[(i + 1) % 4], points[(i + 2) % 4]
                cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
                if abs(cross) < 1e-9:
                    raise ValueError(f"{name}: three of the points lie on one line")
        return self


SIMULATED = "simulated"


class Camera(Model):
    id: Identifier
    source: str = Field(
        min_length=1,
        description="RTSP/HTTP URL, video file path, USB index ('0'), or 'simulated' for the simulator",
    )
    frame_size: tuple[int, int] = Field(description="width, height in pixels that geometry uses")
    loop: bool = Field(default=False, description="restart a video file at its end (demo footage)")
    realtime: bool = Field(
        default=False, description="pace a video file at its own fps as if it were live"
    )
    stall_timeout_s: float = Field(
        default=10.0,
        ge=0.5,
        le=300,
        description="a live stream silent this long is reported offline and reopened",
    )
    zones: list[Zone] = Field(min_length=1)
    lines: list[CountingLine] = Field(default_factory=list)
    classes: list[TrackedClass] = Field(
        default_factory=lambda: [TrackedClass.PERSON],
        min_length=1,
        description="what to count: person, plus car/bus/truck/... for road cameras",
    )
    calibration: Calibration | None = Field(
        default=None, description="ground calibration for density per m²"
    )
    dense_model: str | None = Field(
        default=None,
        description="this camera's own crowd counter (.onnx written by `crowdwatch train counter "
        "--adapt`); null: edge.dense.model",
    )

    @property
    def simulated(self) -> bool:
        return self.source == SIMULATED

    @field_validator("dense_model")
    @classmethod
    def _dense_model_is_onnx(cls, model: str | None) -> str | None:
        if model is not None and Path(model).suffix.lower() != ".onnx":
            raise ValueError(f"expected the path of an .onnx file, got {model!r}")
        return model

    def crowd_counter_path(self, dense: DenseConfig) -> Path:
        """The crowd counter this camera runs: its own ``dense_model``, else ``edge.dense``'s.

        Example:
            >>> cam = Camera(id="c", source="0", frame_size=(640, 480), dense_model="m/c.onnx",
            ...              zones=[Zone(id="z", name=LocalizedName(zh="区", en="Z"),
            ...                          polygon=[(0, 0), (10, 0), (10, 10)])])
            >>> str(cam.crowd_counter_path(DenseConfig()))
            'm/c.onnx'
        """
        return Path(self.dense_model) if self.dense_model is not None else dense.model_path()

    @field_validator("frame_size")
    @classmethod
    def _positive_size(cls, size: tuple[int, int]) -> tuple[int, int]:
        if size[0] <= 0 or size[1] <= 0 or size[0] > 16384 or size[1] > 16384:
            raise ValueError(f"frame_size must be two positive pixel sizes, got {list(size)}")
        return size

    @model_validator(mode="after")
    def _geometry_inside_frame(self) -> Self:
        width, height = self.frame_size
        for kind, items in (("zone", self.zones), ("line", self.lines)):
            for item in items:
                if isinstance(item, Zone):
                    stop_line = list(item.approach.stop_line) if item.approach else []
                    points = [*item.polygon, *stop_line]
                else:
                    points = [item.start, item.end]
                for x, y in points:
                    if not (0 <= x <= width and 0 <= y <= height):
                        raise ValueError(
                            f"{kind} {item.id!r} has point ({x:g}, {y:g}) outside the "
                            f"{width}x{height} frame"
                        )
        _require_unique("zone", [z.id for z in self.zones])
        _require_unique("line", [line.id for line in self.lines])
        return self

    @model_validator(mode="after")
    def _line_classes_counted(self) -> Self:
        # A line for a class the camera does not detect would count nothing, silently.
        for line in self.lines:
            missing = [c.value for c in line.classes or [] if c not in self.classes]
            if missing:
                raise ValueError(
                    f"line {line.id!r} counts {', '.join(missing)}, which the camera does not "
                    f"detect; add it to the camera's classes "
                    f"({', '.join(c.value for c in self.classes)}) or remove it from the line"
                )
        return self

    @model_validator(mode="after")
    def _road_geometry_needs_ground(self) -> Self:
        # Density needs a length and a queue needs metres: refuse at start, not silently
        # publish nothing.
        for zone in self.zones:
            if self.calibration is not None:
                continue
            if zone.lanes is not None and zone.length_m is None:
                raise ValueError(
                    f"zone {zone.id!r} has lanes but neither a length_m nor a camera "
                    "calibration to measure it; give length_m (metres along the road)"
                )
            if zone.approach is not None:
                raise ValueError(
                    f"zone {zone.id!r} is an approach, whose queue length needs the camera's "
                    "calibration; add calibration or remove approach"
                )
        return self


class BusStopOptions(Model):
    """What only a bus stop has (``bus_stop:`` of a ``kind: bus_stop`` site)."""

    routes: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list,
        description="bus routes serving the stop (alert text and grouping: 'add buses on K1')",
    )


class RoadOptions(Model):
    """A road site's own settings: how its mean speed grades into congestion levels."""

    road_class: RoadClass = Field(
        default=RoadClass.ARTERIAL,
        description="expressway, arterial or secondary (branch roads too): the GB/T "
        "33171-2016 speed thresholds of the class",
    )
    speed_thresholds_kmh: tuple[float, float, float, float] | None = Field(
        default=None,
        description="this road's own four boundary speeds, falling (smooth above the first, "
        "severe at or below the last); null: the class's",
    )

    @field_validator("speed_thresholds_kmh")
    @classmethod
    def _falling(
        cls, bounds: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if bounds is not None and not bounds[0] > bounds[1] > bounds[2] > bounds[3] > 0:
            raise ValueError(
                f"expected four falling speeds in km/h, e.g. [65, 50, 35, 20], got {list(bounds)}"
            )
        return bounds

    def thresholds(self) -> SpeedThresholds:
        """The road's thresholds: its own bounds (the class's free-flow speed, or just above
        its first bound), else the standard's for its class."""
        standard = GB_T_33171[self.road_class]
        if self.speed_thresholds_kmh is None:
            return standard
        free_flow = max(standard.free_flow_kmh, self.speed_thresholds_kmh[0] + 10)
        return SpeedThresholds(self.speed_thresholds_kmh, free_flow_kmh=free_flow)


class Site(Model):
    """One place watched by cameras.  What its ``kind`` means (counts, defaults, rules,
    simulator curve, display) is declared in :mod:`crowdwatch.contracts.site_kinds`; a
    kind's own settings go under the kind's key (``bus_stop:``)."""

    id: Identifier
    kind: SiteKind
    name: LocalizedName
    location: Location
    capacity: int = Field(gt=0, le=1_000_000, description="people the whole site holds safely")
    department: Department = Field(description="department that acts on this site's alerts")
    cameras: list[Camera] = Field(min_length=1)
    bus_stop: BusStopOptions | None = Field(
        default=None, description="kind bus_stop only: the routes serving the stop"
    )
    road: RoadOptions | None = Field(
        default=None,
        description="kind road only: its road class (congestion thresholds); null: arterial",
    )

    @model_validator(mode="before")
    @classmethod
    def _routes_under_the_kind(cls, data: Any) -> Any:
        # Configs written before the kinds had their own keys give a stop's routes on the
        # site itself; they stay valid and mean bus_stop.routes.
        if not isinstance(data, dict) or "routes" not in data:
            return data
        data = dict(data)
        routes = data.pop("routes")
        if data.get("kind") != SiteKind.BUS_STOP.value:
            if routes:
                raise ValueError(
                    f"routes: only a bus_stop site has bus routes, this one is "
                    f"{data.get('kind')!r}; remove 'routes'"
                )
            return data
        if "bus_stop" in data:
            raise ValueError(
                "routes: give the routes once, as bus_stop: {routes: [...]}; remove 'routes'"
            )
        data["bus_stop"] = {"routes": routes}
        return data

    @model_validator(mode="after")
    def _kind_settings(self) -> Self:
        if self.bus_stop is not None and self.kind is not SiteKind.BUS_STOP:
            raise ValueError(
                f"bus_stop: settings of a bus_stop site, but this site is {self.kind.value!r};"
                " remove 'bus_stop' or set kind: bus_stop"
            )
        if self.road is not None and self.kind is not SiteKind.ROAD:
            raise ValueError(
                f"road: settings of a road site, but this site is {self.kind.value!r};"
                " remove 'road' or set kind: road"
            )
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        _require_unique("camera", [c.id for c in self.cameras])
        zone_ids = [z.id for c in self.cameras for z in c.zones]
        _require_unique("zone (across the site's cameras)", zone_ids)
        return self

    def lines_by_class(self) -> list[tuple[str, str]]:
        """``(site_id, line_id)`` of each line with ``classes``: a part of the traffic another
        line counts too (buses beside all vehicles), so the site's totals leave them out."""
        return [(self.id, line.id) for c in self.cameras for line in c.lines if line.classes]


class MqttConfig(Model):
    """The broker connection of every process: address, account, TLS.

    Secrets never live in the file: give ``password: ${SOME_ENV}`` (expanded at load) or leave
    it out and set ``CROWDWATCH_MQTT_PASSWORD``.  With ``tls: true`` the broker's certificate is
    verified against ``ca_file`` (else the system's CAs) and its host name checked, unless
    ``tls_insecure`` (testing only) turns the host-name check off.
    """

    host: str = Field(default="127.0.0.1", description="broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="1883 plain, usually 8883 TLS")
    topic_prefix: Identifier = Field(default="crowdwatch", description="first topic level")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT protocol; 3.1.1 only for brokers without MQTT 5 (amqtt)"
    )
    shared_group: Identifier | None = Field(
        default="ingest",
        description="MQTT 5 shared-subscription group of ingest workers; null subscribes plainly",
    )
    username: str | None = Field(
        default=None, description="broker account, e.g. edge-{site}-{camera} (see security)"
    )
    password: SecretStr | None = Field(
        default=None,
        description="use ${ENV}, never the clear text; default: CROWDWATCH_MQTT_PASSWORD",
    )
    tls: bool = Field(default=False, description="connect over TLS, verifying the broker")
    ca_file: Path | None = Field(
        default=None, description="CA certificate (PEM) of the broker's; default: the system's"
    )
    cert_file: Path | None = Field(
        default=None, description="client certificate (PEM), for brokers that require one"
    )
    key_file: Path | None = Field(default=None, description="private key (PEM) of cert_file")
    tls_insecure: bool = Field(
        default=False,
        description="skip the broker host-name check (the CA check stays); testing only",
    )
    keepalive_s: int = Field(
        default=30,
        ge=5,
        le=3600,
        description="seconds between keepalive pings; a broker takes a silent client for lost "
        "(and sends its Last Will) after 1.5 of them, a client its broker after 1 to 2",
    )

    @model_validator(mode="after")
    def _tls_settings_need_tls(self) -> Self:
        given = [
            name
            for name in ("ca_file", "cert_file", "key_file", "tls_insecure")
            if getattr(self, name)
        ]
        if given and not self.tls:
            raise ValueError(f"{', '.join(given)} given but tls is false; set tls: true")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        if self.password is not None and not self.username:
            raise ValueError("password needs username")
        return self

    def resolved_password(self) -> str | None:
        """``password`` (after ``${ENV}`` expansion), else ``CROWDWATCH_MQTT_PASSWORD``."""
        if self.password is not None:
            return self.password.get_secret_value()
        return os.environ.get("CROWDWATCH_MQTT_PASSWORD")


class RetentionConfig(Model):
    """How long the database keeps data (``crowdwatch db retention``; ingest applies it hourly)."""

    raw_days: int = Field(
        default=30, ge=2, le=3650, description="days of raw counts (whole UTC-day partitions)"
    )
    rollup_days: int = Field(
        default=730, ge=2, le=36500, description="days of 1 min / 15 min / 1 h rollups"
    )
    dead_letter_days: int = Field(
        default=14,
        ge=1,
        le=3650,
        description="days a refused payload is kept in dead_letters (expired by the upkeep)",
    )

    @model_validator(mode="after")
    def _rollups_outlive_raw(self) -> Self:
        # Rollups are rebuilt from raw rows: dropping them first would lose data for good.
        if self.rollup_days < self.raw_days:
            raise ValueError(
                f"rollup_days must be at least raw_days ({self.raw_days}), got {self.rollup_days}"
            )
        return self


DatabaseProcess = Literal["ingest", "web", "alerts"]
"""A process that may connect as its own least-privilege database user."""

ROLES_PREFIX_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class DatabaseConfig(Model):
    """Where each process finds PostgreSQL, and how long data is kept.

    ``url`` is the schema owner's: ``crowdwatch db ...`` uses it, and so does every process
    without its own URL.  ``ingest_url``, ``web_url`` and ``alerts_url`` let a process connect as
    a user with only the privileges it needs (``crowdwatch db roles`` creates them); put the
    password in as ``${ENV}``, never in the YAML.
    """

    url: str | None = Field(
        default=None,
        description="libpq URL of the schema owner; the environment variable "
        "CROWDWATCH_DATABASE_URL overrides it",
    )
    ingest_url: str | None = Field(
        default=None,
        description="URL for `crowdwatch ingest` as a member of {roles_prefix}_ingest "
        "(CROWDWATCH_INGEST_DATABASE_URL overrides); unset: url, and ingest also does the upkeep",
    )
    web_url: str | None = Field(
        default=None,
        description="URL for `crowdwatch web` as a member of {roles_prefix}_web "
        "(CROWDWATCH_WEB_DATABASE_URL overrides); unset: url",
    )
    alerts_url: str | None = Field(
        default=None,
        description="URL for `crowdwatch alerts` as a member of {roles_prefix}_alerts "
        "(CROWDWATCH_ALERTS_DATABASE_URL overrides); unset: url",
    )
    roles_prefix: str = Field(
        default="crowdwatch",
        pattern=ROLES_PREFIX_PATTERN,
        description="group roles {prefix}_ingest, {prefix}_web, {prefix}_alerts (`db roles`)",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="raw_days, rollup_days"
    )
    rollup_refresh_s: float = Field(
        default=20.0, ge=1, le=60, description="seconds between rollup refreshes (plain PostgreSQL)"
    )

    def resolved_url(self) -> str:
        url = os.environ.get("CROWDWATCH_DATABASE_URL") or self.url
        if not url:
            raise ConfigError(
                "database.url: no database given; set CROWDWATCH_DATABASE_URL or database.url"
            )
        return url

    def own_url(self, process: DatabaseProcess) -> str | None:
        """The process's own URL (environment first, then ``database.{process}_url``), or None.

        An empty value (``${VAR:-}`` with the variable unset) counts as none.
        """
        env = os.environ.get(f"CROWDWATCH_{process.upper()}_DATABASE_URL")
        field = {"ingest": self.ingest_url, "web": self.web_url, "alerts": self.alerts_url}
        return env or field[process] or None

    def url_for(self, process: DatabaseProcess) -> str:
        """The URL ``process`` connects with: its own when configured, else the owner's.

        Raises:
            ConfigError: neither is configured.
        """
        return self.own_url(process) or self.resolved_url()


class DetectorBackend(StrEnum):
    AUTO = "auto"
    """``.onnx`` runs on ONNX Runtime; anything else (.pt, OpenVINO folder, a name) on Ultralytics"""
    ONNXRUNTIME = "onnxruntime"
    """the light path: ONNX Runtime + OpenCV, no torch"""
    ULTRALYTICS = "ultralytics"
    """``YOLO(model)``: .pt, .onnx, OpenVINO folders; needs ``crowdwatch[ultralytics]``"""


class TilingConfig(Model):
    """Sliced inference for wide shots where people are small: overlapping square tiles."""

    size: int = Field(
        ge=64, le=4096, description="tile side in frame pixels; each tile is fitted to input_size"
    )
    overlap: float = Field(
        default=0.2, ge=0, le=0.75, description="fraction of a tile shared with its neighbour"
    )
    full_frame: bool = Field(
        default=False, description="also detect on the whole frame, for people larger than a tile"
    )


class DetectorConfig(Model):
    model: str = Field(description="path to YOLO weights (.onnx) or an Ultralytics model name")
    backend: DetectorBackend = Field(
        default=DetectorBackend.AUTO, description="auto | onnxruntime | ultralytics"
    )
    confidence: float = Field(default=0.25, gt=0, lt=1)
    iou: float = Field(default=0.7, gt=0, lt=1, description="NMS IoU threshold")
    input_size: int = Field(
        default=640, ge=160, le=2048, description="square input, multiple of 32"
    )
    threads: int = Field(default=0, ge=0, le=64, description="inference threads; 0 = all cores")
    tiles: TilingConfig | None = Field(
        default=None, description="sliced inference (e.g. {size: 320, overlap: 0.2}); off if null"
    )

    @field_validator("input_size")
    @classmethod
    def _stride_multiple(cls, size: int) -> int:
        if size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {size}")
        return size


class TrackingConfig(Model):
    """ByteTrack settings and the debounce of line crossings and waiting times."""

    enabled: bool = Field(
        default=True, description="track people; off: no lines and no waiting times"
    )
    activation_confidence: float = Field(
        default=0.7, gt=0, lt=1, description="detection score that may start a new track"
    )
    high_confidence: float = Field(
        default=0.6, gt=0, lt=1, description="ByteTrack's split of high- and low-score boxes"
    )
    min_iou: float = Field(default=0.1, gt=0, lt=1, description="IoU to match a box to a track")
    lost_track_s: float = Field(
        default=1.0, ge=0, le=60, description="keep a lost track this long for re-association"
    )
    confirm_frames: int = Field(
        default=2, ge=1, le=30, description="matched frames before a track gets an id"
    )
    line_min_frames: int = Field(
        default=2, ge=1, le=100, description="frames a track is seen on one side before it counts"
    )
    line_min_distance_px: float = Field(
        default=6.0, ge=0, le=1000, description="distance from the line (pixels) before it counts"
    )
    line_cooldown_s: float = Field(
        default=2.0, ge=0, le=3600, description="one track counts once per direction in this time"
    )
    wait_grace_s: float = Field(
        default=2.0, ge=0, le=600, description="a person lost this briefly keeps their wait"
    )


class DebugSnapshotConfig(Model):
    """A JPEG for installers, written on the edge box only; people are blurred."""

    dir: str = Field(min_length=1, description="folder on the edge box (never published)")
    every_s: float = Field(default=60.0, gt=0, le=86400, description="seconds between snapshots")


class SpoolConfig(Model):
    """Store-and-forward on the edge box: count messages the broker could not take."""

    path: str = Field(
        min_length=1, description="folder on the edge box; one SQLite file per camera"
    )
    max_messages: int = Field(
        default=100_000, ge=1, le=10_000_000, description="oldest dropped (and counted) beyond"
    )


DEFAULT_DENSE_INTERVAL_S = 1.0
"""How often the density pass runs when ``edge.dense`` names no schedule (it costs ~0.25 s
per 1080p frame on a 4-core box, so it does not run on every analysed frame)."""


class DenseAutoConfig(Model):
    """When a zone in ``mode: auto`` counts by density map instead of by detection.

    At each density pass the zone's detections in that same frame are compared with the
    density map over the zone.  The zone counts by density when the frame is of good
    quality and any rule that is not ``null`` holds:

    * ``small_person_px``: the median person, as large as the detector sees it (pixels of
      its input: a 20 px person in a 320 px tile fitted to a 640 input is 40 px; a whole
      1920 px frame fitted to 640 shrinks it to 7), is lower than this: people this small
      are missed;
    * ``packed_share``: the people detected, each counted as a square of their box height,
      cover at least this share of the zone: people stand so close that boxes overlap and
      the detector saturates;
    * ``unseen_min``: no person is detected in the zone but the density map holds at least
      this many (people too small for the detector to find at all);
    * ``crowded_count``: at least this many people are detected in the zone;
    * ``undercount_ratio``: the detections are fewer than this share of the density count,
      which is at least ``undercount_min`` (so near-empty zones do not flip on noise);
    * ``quiet_max``: the density map holds fewer people than this in the zone and the
      detector is sure of none of its boxes (every score below ``sure_confidence``): boxes
      are the only evidence of anyone there, and ground the detector takes for people
      (sand, rock, paving seen at twice their size in tiles) yields exactly such boxes.

    Otherwise, and until the first density pass, the zone counts by detection.  The choice
    holds until the next density pass; each count message says which method gave ``count``.

    The defaults keep the first three.  Chosen on the beach webcam's choice days (9, 10, 12,
    14 Aug; never 18 Aug), every third ShanghaiTech B test image and every eighth PETS
    frame, with the shipped counter and each set's evaluation detector: the packed share
    is 0.6-2.7 on ShanghaiTech B, 0.05-0.17 on PETS and at most 0.04 on the beach, so 0.3
    parts them with room on both sides.  A count of 40 detections (the former
    ``crowded_count``) sent every busy beach frame to a counter that reads sand as people,
    and the undercount rule trusted that same overcount; without both, MAE on those beach
    frames 59.5 -> 48.1 (detection alone 46.2), PETS 0.67 -> 0.28, ShanghaiTech B 13.9 ->
    13.7.  Scored after on every frame (``crowdwatch eval --methods auto``): the held-out 18
    Aug 103.5 -> 12.3 (its annotators are 15.2 from their mean), PETS 0.49 -> 0.34,
    ShanghaiTech B 13.86 -> 13.56; generated empty ground 0.80 -> 2.22 (tiled boxes find
    a few "people" in generated sand).

    ``quiet_max`` and ``sure_confidence`` undo that last loss.  Chosen on selection sets only
    (protocol in ``models/crowd_counter.md``: empty ground of another seed, 9, 12 and 14 Aug,
    every eighth PETS frame, every third ShanghaiTech B *train* image): on 7 of 24 generated
    frames the tiled detector boxed ground (26 boxes, scores 0.15-0.61, median 0.20; 19 touch
    a tile's edge, 4 are a whole 320 px tile high, most as wide as high) where the density
    map read at most 0.07; on every real frame the map read 2.5 or more (the empty beach
    mornings 2.5-20, PETS 3.6, ShanghaiTech B 14.5), and on every PETS frame the detector was
    at least 0.76 sure of one box.  One person and 0.7 sit in those gaps: selection empty
    ground 0.67 -> 0.00, the beach, PETS and ShanghaiTech B unchanged.  An empty real beach
    is no quiet zone (the map reads people there too): this rule does not count it 0.
    Scored after (``crowdwatch eval --methods auto``): generated empty ground 2.22 -> 0.09,
    the beach days unchanged (18 Aug 12.25), PETS 0.34 and ShanghaiTech B 13.56 unchanged
    (their maps read at least 3.47 and 10.22 on every frame: the rule never fires there).
    """

    small_person_px: float | None = Field(
        default=40.0,
        gt=0,
        le=4096,
        description="density when the median person is lower as the detector sees it (input px)",
    )
    packed_share: float | None = Field(
        default=0.3,
        gt=0,
        le=100,
        description="density when the detected people's squared heights cover this share of the zone",
    )
    unseen_min: float | None = Field(
        default=5.0,
        gt=0,
        le=100_000,
        description="density when no person is detected but the density count is this or more",
    )
    crowded_count: int | None = Field(
        default=None, ge=1, le=100_000, description="density when this many people are detected"
    )
    undercount_ratio: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="density when detections are below this share of the density count",
    )
    undercount_min: float = Field(
        default=5.0,
        ge=0,
        le=100_000,
        description="the density count the undercount rule needs at least",
    )
    quiet_max: float | None = Field(
        default=1.0,
        gt=0,
        le=100_000,
        description="density when the density count is below this and no box is sure",
    )
    sure_confidence: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="a box scored this or more is evidence enough for the quiet rule",
    )

    @model_validator(mode="after")
    def _some_rule(self) -> Self:
        if (
            self.small_person_px is None
            and self.packed_share is None
            and self.unseen_min is None
            and self.crowded_count is None
            and self.undercount_ratio is None
            and self.quiet_max is None
        ):
            raise ValueError(
                "small_person_px, packed_share, unseen_min, crowded_count, undercount_ratio and "
                "quiet_max are all null, so mode "
                "'auto' could never count by density; keep one, or use mode 'detect'"
            )
        return self


class PlausibilityConfig(Model):
    """When a zone's density count is physically implausible and is flagged, not published.

    * more people than the zone's ground holds: ``max_per_m2`` times its area on a calibrated
      camera, else one person per ``min_px_per_person`` pixels of its polygon;
    * a jump no crowd makes between two density passes: more than ``jump_floor`` +
      ``jump_ratio`` x the last accepted count + ``max_change_per_s`` x the seconds since it.

    Each bound may be ``null`` (off).
    """

    max_per_m2: float | None = Field(
        default=6.0,
        gt=0,
        le=20,
        description="people per m² beyond which a count is flagged (6: a crush; per zone: "
        "zones[].max_per_m2)",
    )
    min_px_per_person: float | None = Field(
        default=16.0,
        gt=0,
        le=1_000_000,
        description="without a calibration, a zone holds at most its pixels / this many people",
    )
    max_change_per_s: float | None = Field(
        default=10.0,
        gt=0,
        le=10_000,
        description="people a zone may gain or lose per second beyond the slack below",
    )
    jump_floor: float = Field(
        default=30.0, ge=0, le=1_000_000, description="people a pass may differ by in any case"
    )
    jump_ratio: float = Field(
        default=0.5, ge=0, le=100, description="share of the last count a pass may differ by"
    )


class DenseConfig(Model):
    """The crowd counter (density map) for zones in ``mode: dense`` or ``auto``.

    Loaded only when a zone of a camera the edge runs uses it.  It runs every
    ``every_n_frames``-th analysed frame or every ``interval_s`` seconds (of the worker's
    clock), one of the two; the zone keeps its last density count in between.
    """

    model: str | None = Field(
        default=None,
        description="ONNX density model; null: models/crowd_counter.onnx of the checkout",
    )
    every_n_frames: int | None = Field(
        default=None, ge=1, le=100_000, description="run on every Nth analysed frame"
    )
    interval_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description=f"run every this many seconds; default {DEFAULT_DENSE_INTERVAL_S:g} s",
    )
    threads: int = Field(
        default=0, ge=0, le=64, description="inference threads; 0 = the detector's share"
    )
    max_side: int = Field(
        default=1920, ge=64, le=16384, description="larger frames are downscaled to this first"
    )
    auto: DenseAutoConfig = Field(
        default_factory=DenseAutoConfig, description="when mode 'auto' counts by density"
    )
    plausibility: PlausibilityConfig = Field(
        default_factory=PlausibilityConfig,
        description="density counts a zone cannot hold, or jumps no crowd makes: flagged",
    )

    @field_validator("model")
    @classmethod
    def _onnx_file(cls, model: str | None) -> str | None:
        if model is not None and Path(model).suffix.lower() != ".onnx":
            raise ValueError(f"expected the path of an .onnx file, got {model!r}")
        return model

    @model_validator(mode="after")
    def _one_schedule(self) -> Self:
        if self.every_n_frames is not None and self.interval_s is not None:
            raise ValueError(
                f"set every_n_frames ({self.every_n_frames}) or interval_s "
                f"({self.interval_s:g}), not both"
            )
        return self

    def model_path(self) -> Path:
        """The model file: ``model`` as given, else :func:`default_crowd_counter_path`."""
        return Path(self.model) if self.model is not None else default_crowd_counter_path()

    def run_interval_s(self) -> float | None:
        """Seconds between density passes, or ``None`` when ``every_n_frames`` schedules them."""
        if self.every_n_frames is not None:
            return None
        return self.interval_s if self.interval_s is not None else DEFAULT_DENSE_INTERVAL_S


class EdgeConfig(Model):
    interval_s: float = Field(default=5.0, gt=0, le=3600, description="seconds per count message")
    detect_every: int = Field(
        default=1, ge=1, le=100, description="run the detector every Nth frame"
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="ByteTrack, line and waiting-time settings"
    )
    debug_snapshot: DebugSnapshotConfig | None = Field(
        default=None, description="blurred local JPEG for installers; off if null"
    )
    spool: SpoolConfig | None = Field(
        default=None,
        description="keep count messages on disk while the broker is away; off (lost) if null",
    )
    dense: DenseConfig = Field(
        default_factory=DenseConfig,
        description="crowd counter (density map) for zones in mode dense or auto",
    )

    @model_validator(mode="after")
    def _density_each_interval(self) -> Self:
        # A message interval without a density pass would publish a stale density count.
        dense_s = self.dense.interval_s
        if dense_s is not None and dense_s > self.interval_s:
            raise ValueError(
                f"dense.interval_s ({dense_s:g} s) is longer than interval_s "
                f"({self.interval_s:g} s): some count messages would have no density pass"
            )
        return self


class AlertMetric(StrEnum):
    OCCUPANCY_RATIO = "occupancy_ratio"
    """people / capacity of the zone: its own, else from its ground area (``reports.sites``,
    :mod:`crowdwatch.contracts.ground`), else the site's"""
    PEOPLE = "people"
    """people counted in the zone (at a bus stop: people waiting)"""
    LONGEST_WAIT_MIN = "longest_wait_min"
    """minutes the longest-waiting person now in the zone has been there (needs tracking)"""
    RISE = "rise"
    """people gained over the rule's ``window_s`` (now minus the count ``window_s`` ago)"""
    FORECAST_OCCUPANCY = "forecast_occupancy"
    """share of capacity forecast ``horizon_min`` minutes ahead: fire_at 1.0 reads
    "forecast to reach capacity within horizon_min minutes"
    (see :mod:`crowdwatch.analytics.forecast`)"""
    DENSITY_PER_M2 = "density_per_m2"
    """people per square metre (needs a calibrated camera)"""
    CONGESTION_LEVEL = "congestion_level"
    """a road's congestion level from its vehicles' mean speed, GB/T 33171-2016: 1 畅通
    smooth .. 4 中度拥堵 moderate .. 5 严重拥堵 severe (the site's ``road`` thresholds; an
    empty road is smooth; without a measured speed, from the zone's density by Greenshields'
    rule where it has ``lanes``; vehicles with neither are no data)"""
    QUEUE_SPILLBACK = "queue_spillback"
    """a stop line's queue over its approach's length (``zones[].approach``): 1.0 is a
    queue reaching the approach's upstream end, spilling back over it (the approach's
    ``length_m``, else measured from the camera's calibration)"""
    NO_DATA_S = "no_data_s"
    """seconds a camera has sent no fresh count (offline, stale or never): its own alert,
    one per camera, never read as zero people"""


Severity = Literal["info", "warning", "critical"]


class RuleOverride(Model):
    """Different thresholds (or none) for some sites or zones of a rule."""

    sites: list[Identifier] = Field(default_factory=list, description="empty: every site")
    zones: list[Identifier] = Field(default_factory=list, description="empty: every zone")
    enabled: bool = Field(default=True, description="false: the rule does not watch these")
    fire_at: float | None = Field(default=None, gt=0)
    clear_at: float | None = Field(default=None, ge=0)
    for_s: float | None = Field(default=None, ge=0, le=86400)
    keep_firing_for_s: float | None = Field(default=None, ge=0, le=86400)
    severity: Severity | None = None
    action: LocalizedName | None = None


class AlertRule(Model):
    id: Identifier
    metric: AlertMetric
    fire_at: float = Field(gt=0, description="fire when the metric is at or above this")
    clear_at: float | None = Field(
        default=None, ge=0, description="resolve below this (hysteresis); default fire_at"
    )
    for_s: float = Field(default=0, ge=0, le=86400, description="pending period before firing")
    keep_firing_for_s: float = Field(
        default=0, ge=0, le=86400, description="stay firing this long after clearing (flapping)"
    )
    severity: Severity = "warning"
    site_kinds: list[SiteKind] = Field(default_factory=list, description="empty: every kind")
    sites: list[Identifier] = Field(default_factory=list, description="empty: every site")
    window_s: float = Field(
        default=600, ge=30, le=7200, description="rise / forecast: seconds of history used"
    )
    horizon_min: float = Field(
        default=15, gt=0, le=240, description="forecast: minutes ahead (forecast_occupancy)"
    )
    action: LocalizedName | None = Field(
        default=None,
        description="suggested action; {routes} becomes the site's bus routes",
    )
    mute_windows: list[Identifier] = Field(
        default_factory=list, description="alerts.mute_windows ids: no notifications then"
    )
    overrides: list[RuleOverride] = Field(
        default_factory=list, description="per-site / per-zone thresholds, first match wins"
    )

    @model_validator(mode="after")
    def _clear_not_above_fire(self) -> Self:
        if self.clear_at is not None and self.clear_at > self.fire_at:
            raise ValueError(
                f"clear_at ({self.clear_at:g}) must not be above fire_at ({self.fire_at:g})"
            )
        for i, override in enumerate(self.overrides):
            fire = override.fire_at if override.fire_at is not None else self.fire_at
            clear = override.clear_at if override.clear_at is not None else self.clear_at
            if clear is not None and clear > fire:
                raise ValueError(
                    f"overrides[{i}]: clear_at ({clear:g}) must not be above fire_at ({fire:g})"
                )
        return self


class EscalationStep(Model):
    after_min: float = Field(
        gt=0, le=1440, description="minutes unacknowledged (since the last level) before this"
    )
    notify: list[Identifier] = Field(min_length=1, description="channel ids")


class AlertRoute(Model):
    """Who hears of which alerts: by department and severity (empty lists match all)."""

    departments: list[Department] = Field(default_factory=list)
    severities: list[Severity] = Field(default_factory=list)
    notify: list[Identifier] = Field(min_length=1, description="channel ids")
    escalation: list[EscalationStep] = Field(
        default_factory=list, description="next contacts, then the duty officer"
    )
    group_by: Literal["route", "site", "zone"] = Field(
        default="route",
        description="one message per bus route (a stop without routes: its site) / site / zone",
    )
    mute_windows: list[Identifier] = Field(default_factory=list)
    send_resolved: bool = True


class MuteWindow(Model):
    """Local times without notifications (outside operating hours): start..end, may wrap."""

    id: Identifier
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local")
    weekdays: list[int] = Field(
        default_factory=list, description="ISO weekdays 1=Mon..7=Sun of the start; empty: all"
    )

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, days: list[int]) -> list[int]:
        bad = [d for d in days if not 1 <= d <= 7]
        if bad:
            raise ValueError(f"weekdays are 1 (Monday) .. 7 (Sunday), got {bad}")
        return days


class DeliveryConfig(Model):
    attempts: int = Field(default=5, ge=1, le=50, description="tries per notification")
    backoff_s: float = Field(default=1.0, gt=0, le=600, description="first retry delay, doubled")
    max_backoff_s: float = Field(default=60.0, gt=0, le=3600)
    workers: int = Field(default=4, ge=1, le=64, description="parallel deliveries per channel")


class AlertsConfig(Model):
    evaluate_every_s: float = Field(default=5.0, gt=0, le=3600)
    stale_after_s: float = Field(
        default=120.0, gt=0, description="counts older than this are 'no data', never zero"
    )
    rules: list[AlertRule] = Field(default_factory=list)
    kind_rules: bool = Field(
        default=False,
        description="also apply the standard rules of each site kind in use "
        "(crowdwatch/contracts/site_kinds.py); a rule given here with the same id replaces one",
    )
    channels: list[AlertChannel] = Field(default_factory=list)
    routes: list[AlertRoute] = Field(default_factory=list)
    mute_windows: list[MuteWindow] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    reference_days: list[date] = Field(
        default_factory=list,
        description="past holidays (local dates) the forecast compares with, newest first",
    )
    lease_s: float = Field(
        default=15.0, ge=2, le=600, description="active/standby: the lease lasts this long"
    )
    listen_counts: bool = Field(
        default=True, description="also evaluate each count message as it arrives (MQTT)"
    )

    @model_validator(mode="after")
    def _unique_rules(self) -> Self:
        _require_unique("rule", [r.id for r in self.rules])
        _require_unique("channel", [c.id for c in self.channels])
        _require_unique("mute window", [w.id for w in self.mute_windows])
        channels = {c.id for c in self.channels}
        windows = {w.id for w in self.mute_windows}
        for i, route in enumerate(self.routes):
            named = list(route.notify) + [c for step in route.escalation for c in step.notify]
            unknown = sorted(set(named) - channels)
            if unknown:
                raise ValueError(f"routes[{i}]: unknown channel(s) {unknown}")
            if set(route.mute_windows) - windows:
                missing = sorted(set(route.mute_windows) - windows)
                raise ValueError(f"routes[{i}].mute_windows: unknown mute window(s) {missing}")
        for i, rule in enumerate(self.rules):
            if set(rule.mute_windows) - windows:
                missing = sorted(set(rule.mute_windows) - windows)
                raise ValueError(f"rules[{i}].mute_windows: unknown mute window(s) {missing}")
        return self


PASSWORD_HASH_PATTERN = r"^(scrypt|pbkdf2_sha256)\$[0-9$]+\$[A-Za-z0-9+/=_-]+\$[A-Za-z0-9+/=_-]+$"
"""``scrypt$n$r$p$salt$hash`` or ``pbkdf2_sha256$iterations$salt$hash`` (base64 parts), as
printed by ``python -m crowdwatch.dashboards.passwords``."""


class WebUser(Model):
    """A dispatcher who may log in to ``/dispatch`` and act on alerts."""

    name: Identifier = Field(description="login name; recorded with every action")
    department: Department | None = Field(
        default=None, description="alerts of this department's sites; null sees every department"
    )
    password_hash: str = Field(
        pattern=PASSWORD_HASH_PATTERN,
        description="from `python -m crowdwatch.dashboards.passwords` (never the password)",
    )


class WebConfig(Model):
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    users: list[WebUser] = Field(
        default_factory=list, description="dispatchers; the signing secret is CROWDWATCH_WEB_SECRET"
    )
    session_ttl_s: int = Field(
        default=12 * 3600, ge=60, le=7 * 86400, description="a login lasts this long"
    )
    live_poll_s: float = Field(
        default=2.0, gt=0, le=60, description="how often the live stream reads the database"
    )
    heartbeat_s: float = Field(
        default=15.0, gt=0, le=120, description="a live stream with no news sends a ping this often"
    )
    max_connections: int = Field(
        default=4000,
        ge=8,
        le=1_000_000,
        description="open connections at most (live streams included); more are closed at once",
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a client must send a whole request (headers and body) within this",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, le=300, description="an idle connection between requests is closed"
    )

    @model_validator(mode="after")
    def _unique_users(self) -> Self:
        _require_unique("web user", [u.name for u in self.users])
        return self


_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
_HHMM_END = r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"


def hhmm_minutes(text: str) -> int:
    """``"17:30"`` -> 1050 minutes after local midnight (``"24:00"`` -> 1440)."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class Headway(Model):
    """Scheduled buses every ``every_min`` minutes from ``start`` (the first) until ``end``."""

    start: str = Field(pattern=_HHMM, description="HH:MM local, the first bus at the stop")
    end: str = Field(pattern=_HHMM_END, description="HH:MM local (24:00 allowed), exclusive")
    every_min: float = Field(gt=0, le=240, description="minutes between buses at the stop")

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if hhmm_minutes(self.end) <= hhmm_minutes(self.start):
            raise ValueError(f"end {self.end} must be after start {self.start} (same local day)")
        return self


class BusRoute(Model):
    """A bus route: the stops it serves, its buses' capacity and its timetable.

    The timetable is ``headways`` by time of day, or, for a route left without them, the trips
    of ``transit.gtfs`` whose ``route_short_name`` (else ``route_id``) is this ``id``.
    """

    id: str = Field(
        min_length=1, max_length=40, description="route name as riders know it, e.g. 'K1'"
    )
    bus_capacity: int = Field(gt=0, le=400, description="passengers one bus carries")
    stops: list[Identifier] = Field(min_length=1, description="ids of the bus_stop sites served")
    headways: list[Headway] = Field(
        default_factory=list, description="scheduled headway by time of day; empty: from GTFS"
    )
    extra_bus_lead_min: float = Field(
        default=10.0,
        gt=0,
        le=240,
        description="minutes from the depot to the stop for an extra bus",
    )
    short_turn_lead_min: float | None = Field(
        default=None,
        gt=0,
        le=240,
        description="minutes for a bus turned back mid-route to reach the stop; null: none",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _require_unique("stop", list(self.stops))
        spans = sorted((hhmm_minutes(h.start), hhmm_minutes(h.end)) for h in self.headways)
        for (_, end), (start, _) in pairwise(spans):
            if start < end:
                raise ValueError(f"headways overlap around {start // 60:02d}:{start % 60:02d}")
        turn = self.short_turn_lead_min
        if turn is not None and turn >= self.extra_bus_lead_min:
            raise ValueError(
                f"short_turn_lead_min ({turn:g}) must be shorter than extra_bus_lead_min "
                f"({self.extra_bus_lead_min:g}): a short turn is only sent for being faster"
            )
        return self


class GtfsFeed(Model):
    """A static GTFS feed (folder or .zip) giving the timetable of routes without headways."""

    path: str = Field(min_length=1, description="GTFS folder or .zip (stops, routes, trips, ...)")
    stops: dict[str, Identifier] = Field(
        min_length=1, description="GTFS stop_id -> the bus_stop site it is"
    )


class TransitConfig(Model):
    """Bus routes at the stops, for dispatch recommendations (how many extra buses, where)."""

    routes: list[BusRoute] = Field(min_length=1)
    gtfs: GtfsFeed | None = Field(default=None, description="timetable of routes without headways")
    target_min: float = Field(
        default=15.0, gt=0, le=240, description="clear a crowded stop within this many minutes"
    )
    horizon_min: float = Field(
        default=30.0, gt=0, le=480, description="minutes of timetable a recommendation looks at"
    )

    @model_validator(mode="after")
    def _timetables(self) -> Self:
        _require_unique("route", [r.id for r in self.routes])
        if self.target_min > self.horizon_min:
            raise ValueError(
                f"target_min ({self.target_min:g}) must not exceed horizon_min "
                f"({self.horizon_min:g})"
            )
        if self.gtfs is None:
            bare = [r.id for r in self.routes if not r.headways]
            if bare:
                raise ValueError(f"route(s) {bare} have no headways and there is no gtfs feed")
        return self

    def routes_at(self, site_id: str) -> list[BusRoute]:
        """The routes that serve a stop."""
        return [r for r in self.routes if site_id in r.stops]


class District(Model):
    id: Identifier
    name: LocalizedName
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for local days")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        return tz


class CrowdwatchConfig(Model):
    """The whole YAML file."""

    district: District
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    detector: DetectorConfig | None = None
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    transit: TransitConfig | None = Field(
        default=None, description="bus routes and timetables for dispatch recommendations"
    )
    reports: ReportsConfig = Field(
        default_factory=ReportsConfig,
        description="visitor figures, capacity levels, holiday calendar, the daily report",
    )
    sites: list[Site] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _with_kind_rules(cls, data: Any) -> Any:
        alerts = data.get("alerts") if isinstance(data, dict) else None
        if not isinstance(alerts, dict) or alerts.get("kind_rules") is not True:
            return data
        # Imported here: the kinds' declarations are built from this module's models.
        from crowdwatch.contracts.site_kinds import kind_rules

        sites = data.get("sites") or []
        known = {k.value for k in SiteKind}  # an unknown kind is reported by the site's model
        kinds = {
            SiteKind(s["kind"]) for s in sites if isinstance(s, dict) and s.get("kind") in known
        }
        given = list(alerts.get("rules") or [])
        ids = {r.get("id") for r in given if isinstance(r, dict)}
        extra = [r for r in kind_rules(kinds) if r["id"] not in ids]
        return data | {"alerts": alerts | {"rules": given + extra}}

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        _require_unique("site", [s.id for s in self.sites])
        _check_alert_rule_scopes(self)
        _check_transit_stops(self)
        _check_report_references(self)
        if self.detector is None and any(not c.simulated for _, c in self.cameras()):
            raise ValueError("a camera has a real source, so a 'detector' section is required")
        return self

    def site(self, site_id: str) -> Site:
        for site in self.sites:
            if site.id == site_id:
                return site
        raise KeyError(site_id)

    def cameras(self) -> list[tuple[Site, Camera]]:
        """Every camera of the district with its site."""
        return [(site, cam) for site in self.sites for cam in site.cameras]


def _check_alert_rule_scopes(config: CrowdwatchConfig) -> None:
    """Every site and zone a rule or override names exists (message names the YAML path)."""
    zones_of = {s.id: {z.id for c in s.cameras for z in c.zones} for s in config.sites}
    for i, rule in enumerate(config.alerts.rules):
        path = f"alerts.rules[{i}]"
        unknown = sorted(set(rule.sites) - set(zones_of))
        if unknown:
            raise ValueError(f"{path}.sites: rule {rule.id!r} names unknown site(s) {unknown}")
        for j, override in enumerate(rule.overrides):
            here = f"{path}.overrides[{j}]"
            unknown = sorted(set(override.sites) - set(zones_of))
            if unknown:
                raise ValueError(f"{here}.sites: unknown site(s) {unknown}")
            scope = override.sites or rule.sites or list(zones_of)
            known = set().union(*(zones_of[s] for s in scope)) if scope else set()
            unknown = sorted(set(override.zones) - known)
            if unknown:
                raise ValueError(
                    f"{here}.zones: unknown zone(s) {unknown} of sites {sorted(scope)}"
                )


def _check_report_references(config: CrowdwatchConfig) -> None:
    """Every site, zone and channel the reports section names exists."""
    zones_of = {s.id: {z.id for c in s.cameras for z in c.zones} for s in config.sites}
    for i, site in enumerate(config.reports.sites):
        if site.site not in zones_of:
            raise ValueError(f"reports.sites[{i}].site: unknown site {site.site!r}")
        for j, zone in enumerate(site.zones):
            if zone.zone not in zones_of[site.site]:
                raise ValueError(
                    f"reports.sites[{i}].zones[{j}].zone: site {site.site!r} has no zone "
                    f"{zone.zone!r}"
                )
    unknown = sorted(set(config.reports.mean_stay_min) - {k.value for k in SiteKind})
    if unknown:
        raise ValueError(
            f"reports.mean_stay_min: unknown site kind(s) {unknown}; expected "
            f"{', '.join(k.value for k in SiteKind)}"
        )
    channels = {c.id for c in config.alerts.channels}
    unknown = sorted(set(config.reports.channels) - channels)
    if unknown:
        raise ValueError(f"reports.channels: {unknown} are not ids of alerts.channels")


def _check_transit_stops(config: CrowdwatchConfig) -> None:
    """Every stop a route or the GTFS feed names is a bus_stop site of the district."""
    if config.transit is None:
        return
    stops = {s.id for s in config.sites if s.kind is SiteKind.BUS_STOP}
    for i, route in enumerate(config.transit.routes):
        unknown = sorted(set(route.stops) - stops)
        if unknown:
            raise ValueError(
                f"transit.routes[{i}].stops: route {route.id!r} names {unknown}, "
                f"which are not bus_stop sites"
            )
    if config.transit.gtfs is not None:
        unknown = sorted(set(config.transit.gtfs.stops.values()) - stops)
        if unknown:
            raise ValueError(f"transit.gtfs.stops: {unknown} are not bus_stop sites")


def _require_unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"duplicate {what} id {item!r}")
        seen.add(item)


_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def default_shared_dir() -> Path:
    """``CROWDWATCH_SHARED_DIR``, else ``../shared`` beside the repository checkout."""
    env = os.environ.get("CROWDWATCH_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared"


CROWD_COUNTER_MODEL = Path("models") / "crowd_counter.onnx"
"""Where the trained density network lives, relative to the repository root."""


def default_crowd_counter_path() -> Path:
    """``models/crowd_counter.onnx`` of the crowdwatch checkout, wherever the process runs.

    An installed wheel has no checkout: its copy is under ``<prefix>/share/crowdwatch/models``
    (``[tool.setuptools.data-files]``). Where neither exists, the checkout path is returned so
    that the error names the file to put there.
    """
    checkout = Path(__file__).resolve().parents[2] / CROWD_COUNTER_MODEL
    installed = Path(sysconfig.get_path("data")) / "share" / "crowdwatch" / CROWD_COUNTER_MODEL
    return installed if not checkout.is_file() and installed.is_file() else checkout


def _expand_env(value: str, yaml_path: str) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` from the environment."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if name == "CROWDWATCH_SHARED_DIR":
            return str(default_shared_dir())
        if default is not None:
            return default
        raise ConfigError(f"{yaml_path}: environment variable {name} is not set")

    return _ENV_REF.sub(replace, value)


def _expand_tree(node: Any, path: str) -> Any:
    if isinstance(node, str):
        return _expand_env(node, path or "<root>")
    if isinstance(node, list):
        return [_expand_tree(item, f"{path}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {k: _expand_tree(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    return node


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('sites', 2, 'cameras', 0)`` -> ``sites[2].cameras[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A key with a line break or another control character is shown quoted, so the
            # error stays one line (a YAML key may hold anything).
            name = part if part.isprintable() else repr(part)
            out += f".{name}" if out else name
    return out or "<root>"


def parse_config(data: Any, origin: str = "<config>") -> CrowdwatchConfig:
    """Validate an already-parsed YAML document.

    Raises:
        ConfigError: naming the YAML path and the problem of the first mistakes found.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a YAML mapping at the top, got {type(data).__name__}"
        )
    try:
        expanded = _expand_tree(data, "")
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    try:
        return CrowdwatchConfig.model_validate(expanded)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            # A cross-section check at the top names its own YAML path in the message.
            loc = without_channel_tag(tuple(err["loc"]))
            if err["type"] == CHANNEL_TYPE_ERROR:
                msg, loc = channel_type_problem(err["input"]), (*loc, "type")
            problems.append(f"{format_loc(loc)}: {msg}" if loc else msg)
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(f"{origin}: " + "; ".join(problems[:3]) + more) from None


def load_config(path: str | Path) -> CrowdwatchConfig:
    """Read and validate the YAML config at ``path``.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (message names the YAML path).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from exc
    return parse_config(data, origin=str(path))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line, with where it is: its own text spans several lines and
    quotes the line, which a one-line error names by number instead.

    Example:
        >>> try:
        ...     yaml.safe_load("a: [1,\\n")
        ... except yaml.YAMLError as exc:
        ...     yaml_problem(exc)
        "line 2, column 1: expected the node content, but found '<stream end>'"
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"
