"""The one value every edge stage passes on: the people a detector found in one frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes found in one frame, as parallel arrays (row ``i`` of each is detection ``i``).

    Args:
        xyxy: ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` in pixels of the frame.
        confidence: ``(N,)`` float32 scores in ``[0, 1]``.
        class_id: ``(N,)`` int64 class indices (COCO: 0 is a person).
        tracker_id: ``(N,)`` int64 track ids once a tracker has seen the frame (``-1``: not
            yet a confirmed track); ``None`` straight from a detector.

    Example:
        >>> d = Detections(
        ...     xyxy=np.array([[10, 20, 30, 80]], dtype=np.float32),
        ...     confidence=np.array([0.9], dtype=np.float32),
        ...     class_id=np.array([0]),
        ... )
        >>> d.anchors().tolist()
        [[20.0, 80.0]]
    """

    xyxy: NDArray[np.float32]
    confidence: NDArray[np.float32]
    class_id: NDArray[np.int64]
    tracker_id: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        # Validate once here so zones and counters can trust the shapes.
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy: expected shape (N, 4), got {self.xyxy.shape}")
        n = self.xyxy.shape[0]
        for name, array in (
            ("confidence", self.confidence),
            ("class_id", self.class_id),
            ("tracker_id", self.tracker_id),
        ):
            if array is not None and array.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {array.shape}")

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            confidence=np.zeros(0, dtype=np.float32),
            class_id=np.zeros(0, dtype=np.int64),
        )

    def with_tracker_ids(self, tracker_id: NDArray[np.int64]) -> Detections:
        """The same boxes carrying the given track ids, ``(N,)``."""
        return Detections(self.xyxy, self.confidence, self.class_id, tracker_id)

    def select(self, mask: NDArray[np.bool_]) -> Detections:
        """The detections where ``mask`` (``(N,)`` bool) is true, track ids included."""
        return Detections(
            self.xyxy[mask],
            self.confidence[mask],
            self.class_id[mask],
            None if self.tracker_id is None else self.tracker_id[mask],
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def heights(self) -> NDArray[np.float32]:
        """Box heights in pixels, ``(N,)``: the scale of a person where they stand."""
        return np.asarray(self.xyxy[:, 3] - self.xyxy[:, 1], dtype=np.float32)

    def anchors(self) -> NDArray[np.float32]:
        """Bottom-centre point of each box, ``(N, 2)``: where the person stands.

        Zones are drawn on the ground, so a person belongs to the zone under their feet,
        not the one their head overlaps.

        Returns:
            ``(N, 2)`` float32 ``x, y`` pixel coordinates.
        """
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32, copy=False)
