"""Simulated cameras: count messages that follow the holiday curves, with noise.

Each site gets its own seeded character — a busier or quieter day (x0.8-1.15) and a peak
earlier or later (±30 min) — and each zone its own share, so a wall of simulated sites does
not move in lockstep.

A zone is a little queue of people rather than a fresh random number each interval: every
person stays with the probability given by the kind's typical dwell time, and new people
arrive (a Poisson draw) so that the expected count follows the curve.  For a steady curve the
count is Poisson-distributed around its expectation (an M/M/inf queue), yet consecutive counts
are correlated as a real crowd's are, so alerts do not flap on noise alone; arrivals and
departures are also what a counting line at the entrance sees.

A road (a kind whose cameras count vehicles) runs the same queue with vehicles: its curve's
inbound morning and outbound evening peaks fill the section, and the vehicles' mean speed
follows Greenshields' model (``free_flow * (1 - vehicles / capacity)``, the site's capacity
being the vehicles the section holds at a standstill) with a little noise, so a jam builds
as the peak comes and clears after it; nobody walks on the carriageway (``count`` 0).
A zone that is a stop line's approach also gets its queue (:func:`approach_queue_m`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from crowdwatch.contracts.config import Camera, CountingLine, Site, TrackedClass, Zone
from crowdwatch.contracts.congestion import JAM_DENSITY_PER_KM_LANE
from crowdwatch.contracts.ground import lane_km, road_length_m
from crowdwatch.contracts.messages import MAX_PEOPLE, CountMessage, LineCount, ZoneCount
from crowdwatch.contracts.site_kinds import road_thresholds, spec
from crowdwatch.simulator.curves import expected_occupancy

SIMULATED_FPS = 10.0
"""Frames a simulated camera pretends to analyse per second."""


TRAFFIC_MIX: dict[TrackedClass, float] = {
    TrackedClass.CAR: 0.84,
    TrackedClass.TRUCK: 0.07,
    TrackedClass.MOTORCYCLE: 0.06,
    TrackedClass.BUS: 0.03,
}
"""Share of each motor vehicle class in simulated road traffic (illustrative, not measured):
what a line with ``classes`` sees of a simulated road's flow."""


def line_share(line: CountingLine, camera: Camera, vehicles: bool) -> float:
    """The share of a simulated camera's crossings that ``line`` counts.

    Args:
        line: the line; without ``classes`` it counts every crossing (1).
        camera: its camera (the classes it detects).
        vehicles: whether the simulated flow is vehicles (a road) rather than people.

    Returns:
        On a road, the line's classes' share of :data:`TRAFFIC_MIX` among the camera's
        classes; elsewhere 1 when the line counts people, else 0.

    Example:
        >>> from crowdwatch.contracts.config import LocalizedName
        >>> cam = Camera(id="c", source="simulated", frame_size=(100, 100),
        ...              classes=["car", "bus", "truck", "motorcycle"],
        ...              zones=[Zone(id="z", name=LocalizedName(zh="区", en="Z"),
        ...                          polygon=[(0, 0), (10, 0), (10, 10)])])
        >>> bus = CountingLine(id="bus", name=LocalizedName(zh="公交", en="Bus"), start=(0, 50),
        ...                    end=(100, 50), in_direction=(0, 1), classes=["bus"])
        >>> line_share(bus, cam, vehicles=True)
        0.03
    """
    if line.classes is None:
        return 1.0
    if not vehicles:
        return 1.0 if TrackedClass.PERSON in line.classes else 0.0
    seen = sum(TRAFFIC_MIX.get(c, 0.0) for c in camera.classes)
    counted = sum(TRAFFIC_MIX.get(c, 0.0) for c in line.classes)
    return round(counted / seen, 6) if seen > 0 else 0.0


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: Knuth's method for small means, the normal approximation above 50.

    Args:
        rng: the random source.
        mean: the expected value (<= 0 gives 0).

    Returns:
        A non-negative count.
    """
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: how many of ``n`` people each stay with probability ``p``.

    Args:
        rng: the random source.
        n: trials (people).
        p: success probability.

    Returns:
        A count in ``[0, n]``; exact below 60 trials, the normal approximation above.
    """
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n < 60:
        return sum(1 for _ in range(n) if rng.random() < p)
    draw = round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))
    return min(n, max(0, draw))


@dataclass(frozen=True, slots=True)
class _ZoneFlow:
    count: ZoneCount
    arrived: int
    departed: int
    units: int
    """people, or vehicles on a road"""


@dataclass(frozen=True, slots=True)
class SiteCharacter:
    """The seeded per-site variation of the curve."""

    scale: float
    """multiplies the expected occupancy: a busier or quieter site"""
    shift_h: float
    """hours the site's day runs late (positive) or early"""

    @classmethod
    def draw(cls, site_id: str, seed: int) -> SiteCharacter:
        # A string seed is hashed by SHA-512, so the character is stable across runs.
        rng = random.Random(f"{seed}:{site_id}")
        return cls(scale=rng.uniform(0.8, 1.15), shift_h=rng.uniform(-0.5, 0.5))


class SimulatedCamera:
    """One simulated camera of one site.

    Args:
        site: the site the camera belongs to.
        camera: its config (``source: simulated``).
        seed: the run's seed; the same seed gives the same site character and noise.
    """

    def __init__(self, site: Site, camera: Camera, seed: int) -> None:
        self.site = site
        self.camera = camera
        self.character = SiteCharacter.draw(site.id, seed)
        self._rng = random.Random(f"{seed}:{site.id}:{camera.id}:noise")
        zone_rng = random.Random(f"{seed}:{site.id}:{camera.id}:zones")
        self._zone_weight = {z.id: zone_rng.uniform(0.85, 1.15) for z in camera.zones}
        self._zones: dict[str, tuple[int, float]] = {}
        """zone id -> (people at the last count, the expected number then)"""

    def occupancy(self, local_hour: float) -> float:
        """The site's expected share of capacity at a local hour, with its character."""
        kind = self.site.kind
        return self.character.scale * expected_occupancy(kind, local_hour - self.character.shift_h)

    def zone_capacity(self, zone: Zone) -> float:
        """The zone's capacity, or an even share of the site's when the zone has none."""
        if zone.capacity is not None:
            return float(zone.capacity)
        zones = sum(len(c.zones) for c in self.site.cameras)
        return self.site.capacity / zones

    def counts(
        self,
        ts: datetime,
        local_hour: float,
        interval_s: float,
        simulated_interval_s: float | None = None,
    ) -> CountMessage:
        """The next interval's count message (the camera remembers who is still there).

        Args:
            ts: end of the interval, real wall-clock UTC (the message is live data).
            local_hour: the simulated local time of day that drives the curve.
            interval_s: the interval's real length in seconds (the message's ``interval_s``).
            simulated_interval_s: simulated seconds since the previous call (``speed *
                interval_s``); decides how many people leave.  Default ``interval_s``.

        Returns:
            A :class:`CountMessage` with every zone and line of the camera.
        """
        elapsed = interval_s if simulated_interval_s is None else simulated_interval_s
        share = self.occupancy(local_hour)
        flows = [self._zone_step(zone, share, elapsed) for zone in self.camera.zones]
        arrived = sum(f.arrived for f in flows)
        departed = sum(f.departed for f in flows)
        people = sum(f.units for f in flows)
        lines = [
            self._line_count(line, people, arrived, departed, local_hour, elapsed)
            for line in self.camera.lines
        ]
        return CountMessage(
            site_id=self.site.id,
            camera_id=self.camera.id,
            ts=ts,
            interval_s=interval_s,
            frames=max(1, round(interval_s * SIMULATED_FPS)),
            zones=[f.count for f in flows],
            lines=lines,
        )

    def _zone_step(self, zone: Zone, share: float, elapsed_s: float) -> _ZoneFlow:
        target = share * self._zone_weight[zone.id] * self.zone_capacity(zone)
        previous = self._zones.get(zone.id)
        if previous is None:
            count, arrived, departed, before = poisson(self._rng, target), 0, 0, None
        else:
            before, before_target = previous
            # Each person stays with the probability of a dwell-time exponential, or less
            # when the curve falls (people leave faster than they usually would).
            stay = math.exp(-elapsed_s / (spec(self.site.kind).dwell_h * 3600))
            if before_target > 0:
                stay = min(stay, target / before_target)
            stayed = binomial(self._rng, before, stay)
            arrived = poisson(self._rng, max(0.0, target - stay * before_target))
            departed = before - stayed
            count = stayed + arrived
        count = min(MAX_PEOPLE, count)
        self._zones[zone.id] = (count, target)
        # Within the interval the crowd moved between the previous count and this one.
        low, high = (count, count) if before is None else sorted((count, before))
        count_max = min(MAX_PEOPLE, high + poisson(self._rng, math.sqrt(target) / 4))
        if spec(self.site.kind).vehicles:
            return _ZoneFlow(self._traffic(zone, count, target), arrived, departed, count)
        zone_count = ZoneCount(
            zone_id=zone.id, count=count, count_max=count_max, count_mean=(low + high) / 2
        )
        return _ZoneFlow(zone_count, arrived, departed, count)

    def _traffic(self, zone: Zone, vehicles: int, target: float) -> ZoneCount:
        """A road zone: its vehicles, their mean speed (Greenshields) and, on a zone with
        lanes, their density per km per lane; no people."""
        free_flow = road_thresholds(self.site).free_flow_kmh
        # The expected load, not the draw, sets the speed: traffic slows with the crowd on
        # the road, not with one more car in a count.
        load = min(1.0, target / self.zone_capacity(zone))
        speed = free_flow * (1.0 - load) + self._rng.gauss(0.0, 1.5)
        return ZoneCount(
            zone_id=zone.id,
            count=0,
            count_max=0,
            count_mean=0.0,
            vehicles=vehicles,
            mean_speed_kmh=round(min(free_flow, max(1.0, speed)), 1),
            vehicle_density=vehicle_density(zone, self.camera, vehicles),
            queue_length_m=approach_queue_m(zone, self.camera, vehicles, load),
        )

    def _line_count(
        self,
        line: CountingLine,
        people: int,
        arrived: int,
        departed: int,
        local_hour: float,
        elapsed_s: float,
    ) -> LineCount:
        kind = spec(self.site.kind)
        share = line_share(line, self.camera, kind.vehicles)
        if not kind.passes_through:
            # Everyone who came or went crossed the entrance line (those of its classes).
            if share < 1.0:
                arrived = binomial(self._rng, arrived, share)
                departed = binomial(self._rng, departed, share)
            return LineCount(
                line_id=line.id,
                in_count=min(MAX_PEOPLE, arrived),
                out_count=min(MAX_PEOPLE, departed),
            )
        # Traffic passes through (a road): inbound in the morning, outbound in the evening.
        passing = share * people / kind.dwell_h * elapsed_s / 3600
        in_share = 0.8 if local_hour % 24 < 13 else 0.25
        return LineCount(
            line_id=line.id,
            in_count=min(MAX_PEOPLE, poisson(self._rng, passing * in_share)),
            out_count=min(MAX_PEOPLE, poisson(self._rng, passing * (1 - in_share))),
        )


RED_SHARE = 0.5
"""Share of a signal cycle that is red: at light traffic, the most that stand at once are the
approach's vehicles that arrived while it was red."""


def approach_queue_m(zone: Zone, camera: Camera, vehicles: int, load: float) -> float | None:
    """The longest queue back from a simulated stop line in an interval, in metres (as the edge
    publishes it for ``zones[].approach``); ``None`` for a zone that is no approach.

    The share of the approach's vehicles that stand grows with the load (the expected vehicles
    over those the section holds at a standstill): ``RED_SHARE`` of them at light traffic (those
    caught by a red), the load's share above it, all of them at a standstill, each lane's
    standing vehicles ``1000 / JAM_DENSITY_PER_KM_LANE`` (6.7) m apart. At a standstill the
    queue fills the approach (spill-back 1.0); it never reaches past it, as the camera sees
    nothing beyond its zone.

    Example:
        >>> from crowdwatch.contracts.config import Calibration
        >>> cal = Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)],
        ...                   ground_points_m=[(0, 0), (10, 0), (10, 100), (0, 100)])
        >>> z = Zone(id="a", name={"zh": "进口道", "en": "approach"}, lanes=2,
        ...          polygon=[(0, 0), (100, 0), (100, 100), (0, 100)],
        ...          approach={"stop_line": [(0, 100), (100, 100)]})
        >>> cam = Camera(id="c", source="simulated", frame_size=(100, 100), zones=[z],
        ...              calibration=cal)
        >>> approach_queue_m(z, cam, 4, 0.1), approach_queue_m(z, cam, 30, 1.0)
        (6.7, 100.0)
    """
    if zone.approach is None:
        return None
    length = road_length_m(zone, camera.calibration)
    if length is None:
        return None
    standing = vehicles / (zone.lanes or 1) * max(RED_SHARE, load)
    # Rounded first: a rounded-up length would read as a queue past the approach's end.
    return min(round(standing * 1000.0 / JAM_DENSITY_PER_KM_LANE, 1), length)


def vehicle_density(zone: Zone, camera: Camera, vehicles: int) -> float | None:
    """Vehicles per km per lane of a road zone with ``lanes`` (as the edge publishes it);
    ``None`` for a zone without lanes."""
    lanes = lane_km(zone, camera.calibration)
    return None if lanes is None else round(min(vehicles / lanes, 1000.0), 2)
