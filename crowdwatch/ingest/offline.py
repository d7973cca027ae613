"""Give ``available: offline`` notices a timestamp that cannot override a newer status.

The notice (the edge worker's Last Will, or its goodbye) carries no timestamp, and the receive
time is a bad one whenever the notice arrives late: replayed from the persistent session after
an ingest restart, or replayed as a retained value when we subscribe.  Then the camera may have
come back meanwhile, and its newer ``status`` messages, dated by the edge clock, sort before a
notice dated "now": the wall would show a working camera as offline.

The rule (:meth:`OfflineDating.apply`):

- A notice is dated **1 ms after the camera's last sign of life**: the newest ``ts`` of a
  counts or status message of that camera, taken from the database (``zone_latest``,
  ``camera_latest_status``; so several workers of a shared group agree) and from the messages
  received before it in the same batch.  The camera died after it last spoke and before the
  Last Will fired, so this is the earliest possible moment, in the edge's own clock: every
  status the camera publishes after it comes back is newer, however late the notice arrives
  and however wrong the edge clock is.
- Nothing known about the camera: a live notice is dated at its receive time; a **retained**
  replay is dropped (it says "offline since some unknown time" about a camera the wall has no
  data for anyway, and dating it "now" could override the status replays that follow it).
- The camera's newest status is already such a notice, with no sign of life after it: the
  notice repeats what the database says and is dropped.
- The message id is derived from camera and date, so a redelivered notice is written once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg

from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.messages import CountMessage, StatusMessage, TopicKind
from crowdwatch.ingest.validate import OFFLINE_DETAIL, Accepted, Rejected
from crowdwatch.storage.db import connect

AFTER_LAST_SIGN = timedelta(milliseconds=1)
_ID_NAMESPACE = uuid.UUID("6f1c2a52-4b55-4a8e-9a57-0d7e3c1b8f10")

CameraKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class LastSeen:
    """What the database knows about one camera."""

    status_ts: datetime | None = None
    status_is_notice: bool = False
    """The newest status is itself a dated offline notice."""
    counts_ts: datetime | None = None


LastSeenLookup = Callable[[Iterable[CameraKey]], dict[CameraKey, LastSeen]]
"""Reads :class:`LastSeen` for some cameras (missing cameras: nothing known)."""


def is_offline_notice(item: Accepted | Rejected) -> bool:
    """An accepted ``available: offline`` (as opposed to a status message the edge sent)."""
    return (
        isinstance(item, Accepted)
        and isinstance(item.message, StatusMessage)
        and item.envelope.topic.endswith("/" + TopicKind.AVAILABLE.value)
    )


def notice_message_id(site_id: str, camera_id: str, ts: datetime) -> str:
    """Stable id of the notice for one camera and date (idempotent redelivery)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{site_id}/{camera_id}/offline/{ts.isoformat()}"))


class OfflineDating:
    """Applies the module's rule to a batch of validated messages.

    Args:
        lookup: reads what the database knows; called once per batch that has a notice.
    """

    def __init__(self, lookup: LastSeenLookup) -> None:
        self._lookup = lookup

    def apply(self, items: Sequence[Accepted | Rejected]) -> list[Accepted | Rejected]:
        """Date the offline notices of ``items`` (in receive order), dropping repeats.

        Args:
            items: one batch, in the order the messages were received.

        Returns:
            The batch with each notice dated or removed; other items unchanged.

        Raises:
            StorageError: the lookup failed (retry the batch).
        """
        notices = [i for i in items if is_offline_notice(i)]
        if not notices:
            return list(items)
        known = self._lookup({_key(i) for i in notices if isinstance(i, Accepted)})
        out: list[Accepted | Rejected] = []
        for item in items:
            if not isinstance(item, Accepted):
                out.append(item)
                continue
            key = _key(item)
            seen = known.get(key, LastSeen())
            if is_offline_notice(item):
                dated = _date_notice(item, seen)
                if dated is not None:
                    out.append(dated)
                    known[key] = replace(seen, status_ts=dated.message.ts, status_is_notice=True)
                continue
            known[key] = _after(seen, item.message)
            out.append(item)
        return out


def _key(item: Accepted) -> CameraKey:
    return (item.message.site_id, item.message.camera_id)


def _after(seen: LastSeen, message: CountMessage | StatusMessage) -> LastSeen:
    if isinstance(message, CountMessage):
        if seen.counts_ts is None or message.ts > seen.counts_ts:
            return replace(seen, counts_ts=message.ts)
        return seen
    if seen.status_ts is None or message.ts > seen.status_ts:
        return replace(seen, status_ts=message.ts, status_is_notice=False)
    return seen


def _date_notice(item: Accepted, seen: LastSeen) -> Accepted | None:
    counts = seen.counts_ts
    if (
        seen.status_is_notice
        and seen.status_ts is not None
        and (counts is None or counts <= seen.status_ts)
    ):
        return None  # already recorded as offline, and nothing heard since
    signs = [ts for ts in (counts, None if seen.status_is_notice else seen.status_ts) if ts]
    if signs:
        ts = max(signs) + AFTER_LAST_SIGN
    elif item.envelope.retained:
        return None
    else:
        ts = item.envelope.received_at
    message = item.message
    assert isinstance(message, StatusMessage)
    dated = message.model_copy(
        update={"ts": ts, "message_id": notice_message_id(message.site_id, message.camera_id, ts)}
    )
    return Accepted(item.envelope, dated)


_STATUS_QUERY = """
SELECT site_id, camera_id, ts, detail = %s
FROM camera_latest_status
WHERE (site_id, camera_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""

_COUNTS_QUERY = """
SELECT site_id, camera_id, max(ts)
FROM zone_latest
WHERE (site_id, camera_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
GROUP BY site_id, camera_id
"""


class DatabaseLastSeen:
    """A :data:`LastSeenLookup` on its own connection, reopened after a failure.

    Args:
        url: libpq URL of a migrated database.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection | None = None

    def __call__(self, cameras: Iterable[CameraKey]) -> dict[CameraKey, LastSeen]:
        keys = sorted(cameras)
        sites = [k[0] for k in keys]
        cams = [k[1] for k in keys]
        try:
            conn = self._connection()
            status = conn.execute(_STATUS_QUERY, (OFFLINE_DETAIL, sites, cams)).fetchall()
            counts = conn.execute(_COUNTS_QUERY, (sites, cams)).fetchall()
        except psycopg.Error as exc:
            self.close()
            raise StorageError(f"cannot read the cameras' last status: {exc}") from exc
        found: dict[CameraKey, LastSeen] = {}
        for site, cam, ts, notice in status:
            found[(site, cam)] = LastSeen(status_ts=ts, status_is_notice=bool(notice))
        for site, cam, ts in counts:
            found[(site, cam)] = replace(found.get((site, cam), LastSeen()), counts_ts=ts)
        return found

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url, autocommit=True)
        return self._conn
