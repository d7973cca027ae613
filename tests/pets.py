"""Ground truth of PETS 2009 S2L1 for the tests: the same readers ``crowdwatch eval`` uses."""

from __future__ import annotations

from pathlib import Path

from crowdwatch.evaluation.datasets import pets_truth, pets_video

__all__ = ["pets_truth", "pets_truth_counts", "pets_video"]


def pets_truth_counts(shared_dir: Path) -> dict[int, int]:
    """People annotated per frame number."""
    return {frame: len(boxes) for frame, boxes in pets_truth(shared_dir).items()}
