"""The edge worker: decode a camera stream, detect people, count them per zone, publish counts.

One worker per camera (:class:`~crowdwatch.edge.worker.CameraWorker`), started together by
:func:`~crowdwatch.edge.service.run_edge`.  Stages hand each other typed values: a
:class:`~crowdwatch.edge.source.Frame` from the source, :class:`~crowdwatch.edge.detections.Detections`
from the detector, a mask and a count from each :class:`~crowdwatch.edge.zones.ZoneOccupancy`,
and a :class:`~crowdwatch.contracts.messages.CountMessage` per interval.  No image leaves the edge.
"""
