"""Train the crowd counter (:mod:`crowdwatch.training.density_net`) on CPU or GPU.

    crowdwatch train counter --steps 12000 --minutes 95 --seed 0 --out models/crowd_counter

Data: ShanghaiTech A and B ``train_data`` and Mall frames 1-640 (641-800 are held back for
``crowdwatch eval``). Each step takes random crops, rescaled 0.4-1.4x (so the model sees people from
5 to 60 px tall), flipped, with colour, brightness and grayscale changes (dark and blown-out frames
happen on real cameras). Generated empty ground (:mod:`crowdwatch.training.textures`) makes
12% of the crops and covers part of 30% of the others, target zero: the first counter, trained on
crowds alone, read beach sand as one. Another 20% are composite beaches
(:mod:`crowdwatch.training.beach_scene`): people cut from the same training images, shrunk to
2-12 px heads and pasted on generated sand and sea with umbrellas and towels between them.
``--init`` starts from an exported counter (fine-tuning). ``--real-beach SHARE`` draws that share
of crops from the beach webcam's labelled days (:func:`~crowdwatch.training.head_points.load_beach_train`,
full size, rescaled 0.7-1.4x); the held-out day (18 Aug) is refused.

The loss is a pixel term on the density (heads blurred over neighbouring cells) plus a count term
on each crop. The count term keeps the total right, which a pixel loss alone lets drift low
(a short trial undercounted 5-8%).

The run writes ``checkpoint.pt`` every few minutes (a stopped run resumes with ``--resume``),
``train_log.jsonl``, and at the end ``crowd_counter.onnx`` with a count calibration fitted on the
training images (:mod:`crowdwatch.training.calibrate`; ``--export-only`` redoes just that step
from the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from crowdwatch.training.beach_scene import beach_scene
from crowdwatch.training.density_net import (
    DENSITY_SCALE,
    STRIDE,
    DensityNet,
    export_onnx,
    load_onnx_weights,
    yolo_backbone,
)
from crowdwatch.training.head_points import (
    PointImage,
    load_beach_train,
    load_mall_train,
    load_shanghaitech_train,
    points_in_grid,
)
from crowdwatch.training.textures import ground_texture

MALL_TRAIN_FRAMES = range(1, 641)
"""Mall frames trained on; 641-800 stay unseen for evaluation."""
MIX = {"shanghaitech_b": 0.45, "shanghaitech_a": 0.35, "mall": 0.20}
"""Share of crops drawn from each source (B matters most for street and bus-stop scenes)."""
EMPTY_GROUND = 0.12
"""Share of crops that are empty ground (:mod:`crowdwatch.training.textures`), target zero."""
GROUND_PATCH = 0.3
"""Chance that a crop of people gets a patch of empty ground pasted over part of it."""
BEACH_SCENE = 0.2
"""Share of crops that are composite beaches (:mod:`crowdwatch.training.beach_scene`)."""
REAL_BEACH_SCALE = (0.7, 1.4)
"""Rescale range of crops of the real beach webcam: around 1, the size the edge counts it at
(its heads are 5-10 px already; the crowd photos' 0.4-1.4 would shrink them to nothing)."""
FROZEN_LAYERS = 3
"""YOLO layers 0-2 (edges and textures) stay as trained on COCO."""

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _blur(grid: NDArray[np.float32]) -> NDArray[np.float32]:
    # Spreads each head over ~3x3 cells; the count term uses the unblurred sum.
    blurred = cv2.GaussianBlur(grid, (5, 5), sigmaX=1.0, borderType=cv2.BORDER_REFLECT)
    return np.asarray(blurred, dtype=np.float32)


def _photometric(image: NDArray[np.uint8], rng: random.Random) -> NDArray[np.uint8]:
    out = image.astype(np.float32)
    if rng.random() < 0.15:
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
    gain = math.exp(rng.uniform(-0.9, 0.5))  # from dark dusk frames to bright sun
    bias = rng.uniform(-25, 25)
    out = out * gain + bias
    if rng.random() < 0.3:
        out = out * np.array([rng.uniform(0.85, 1.15) for _ in range(3)])  # white balance
    if rng.random() < 0.15:  # morning and evening sun: warm light (BGR: less blue, more red)
        out = out * np.array([rng.uniform(0.6, 0.85), rng.uniform(0.85, 1.0), 1.0])
    return np.clip(out, 0, 255).astype(np.uint8)


Crop = tuple[NDArray[np.uint8], NDArray[np.float32], NDArray[np.float32], float]


def empty_ground_crop(size: int, rng: random.Random) -> Crop:
    """A crop of empty ground: sand, water, foliage... whose every cell must count 0."""
    texture = ground_texture(size, size, np.random.default_rng(rng.getrandbits(63)))
    cells = size // STRIDE
    zeros = np.zeros((cells, cells), dtype=np.float32)
    return _photometric(texture, rng), zeros, np.ones_like(zeros), 0.0


def _paste_ground(
    crop: NDArray[np.uint8],
    points: NDArray[np.float32],
    mask: NDArray[np.bool_],
    rng: random.Random,
) -> tuple[NDArray[np.uint8], NDArray[np.float32], NDArray[np.bool_]]:
    """Empty ground over a random rectangle of a crop, on cell boundaries; its heads removed.

    People next to sand is what a beach is: the network must learn that the sand beside them
    counts nothing, not that a whole image is either crowd or ground.
    """
    size = crop.shape[0]
    cells = size // STRIDE
    rows, cols = (rng.randint(cells // 5, cells // 2) for _ in range(2))
    top, left = rng.randint(0, cells - rows), rng.randint(0, cells - cols)
    y0, y1, x0, x1 = top * STRIDE, (top + rows) * STRIDE, left * STRIDE, (left + cols) * STRIDE
    texture = ground_texture(y1 - y0, x1 - x0, np.random.default_rng(rng.getrandbits(63)))
    crop = crop.copy()
    crop[y0:y1, x0:x1] = texture
    inside = (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
    mask = mask.copy()
    mask[y0:y1, x0:x1] = True  # known empty, even outside Mall's region of interest
    return crop, points[~inside], mask


def beach_crop(samples: list[PointImage], size: int, rng: random.Random) -> Crop:
    """A composite beach of people shrunk onto sand (every cell labelled)."""
    image, points = beach_scene(size, samples, rng)
    grid = points_in_grid(points, (size, size), STRIDE)
    mask = np.ones_like(grid)
    return _photometric(image, rng), _blur(grid), mask, float(grid.sum())


def make_crop(
    sample: PointImage,
    size: int,
    rng: random.Random,
    scale_range: tuple[float, float] = (0.4, 1.4),
) -> Crop:
    """A random crop: image, blurred density target, loss mask (both at 1/8) and its count."""
    scale = math.exp(rng.uniform(math.log(scale_range[0]), math.log(scale_range[1])))
    image, points, mask = sample.image, sample.points * scale, sample.mask
    height, width = image.shape[:2]
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = np.asarray(cv2.resize(image, new_size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    full_mask = (
        np.ones(image.shape[:2], dtype=bool)
        if mask is None
        else np.asarray(
            cv2.resize(mask.astype(np.uint8), new_size, interpolation=cv2.INTER_NEAREST), bool
        )
    )
    # Pad to at least the crop size: a padded border is an empty scene, which counts 0.
    pad_y, pad_x = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_y or pad_x:
        image = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)))
        full_mask = np.pad(full_mask, ((0, pad_y), (0, pad_x)), constant_values=True)
    y0 = rng.randrange(0, image.shape[0] - size + 1)
    x0 = rng.randrange(0, image.shape[1] - size + 1)
    crop = image[y0 : y0 + size, x0 : x0 + size]
    crop_mask = full_mask[y0 : y0 + size, x0 : x0 + size]
    shifted = points - np.array([x0, y0], dtype=np.float32)
    if rng.random() < 0.5:
        crop, crop_mask = crop[:, ::-1], crop_mask[:, ::-1]
        shifted = shifted.copy()
        shifted[:, 0] = size - 1 - shifted[:, 0]
    if rng.random() < GROUND_PATCH:
        crop, shifted, crop_mask = _paste_ground(
            np.ascontiguousarray(crop), shifted, crop_mask, rng
        )
    grid = points_in_grid(shifted, (size, size), STRIDE)
    cells = size // STRIDE
    cell_mask = (
        cv2.resize(crop_mask.astype(np.float32), (cells, cells), interpolation=cv2.INTER_AREA) > 0.5
    ).astype(np.float32)
    count = float((grid * cell_mask).sum())
    return _photometric(np.ascontiguousarray(crop), rng), _blur(grid) * cell_mask, cell_mask, count


def batches(
    sources: dict[str, list[PointImage]],
    batch: int,
    size: int,
    seed: int,
    real_beach: float = 0.0,
) -> Iterator[Batch]:
    """Endless batches ``(images, targets, masks, counts)``, prepared one ahead in a thread.

    ``real_beach`` is the share of crops taken from ``sources["beach_webcam"]`` (the labelled
    webcam days, :func:`~crowdwatch.training.head_points.load_beach_train`); the other crops
    keep the proportions of :data:`MIX`, :data:`EMPTY_GROUND` and :data:`BEACH_SCENE`.
    """
    rng = random.Random(seed)
    names = list(MIX)
    weights = [MIX[n] for n in names]
    people = [sample for name in names for sample in sources[name]]
    # Frame first, then annotator: a frame two people labelled is drawn as often as any other.
    beach_frames: dict[str, list[PointImage]] = {}
    for sample in sources.get("beach_webcam", []):
        beach_frames.setdefault(sample.key.split("#")[0], []).append(sample)
    beach_labels = list(beach_frames.values())
    if real_beach > 0 and not beach_labels:
        raise ValueError("real_beach > 0 needs labelled frames in sources['beach_webcam']")

    def build() -> Batch:
        crops = []
        for _ in range(batch):
            if real_beach > 0 and rng.random() < real_beach:
                labels = rng.choice(rng.choice(beach_labels))
                crops.append(make_crop(labels, size, rng, REAL_BEACH_SCALE))
                continue
            draw = rng.random()
            if draw < EMPTY_GROUND:
                crops.append(empty_ground_crop(size, rng))
                continue
            if draw < EMPTY_GROUND + BEACH_SCENE:
                crops.append(beach_crop(people, size, rng))
                continue
            name = rng.choices(names, weights)[0]
            crops.append(make_crop(rng.choice(sources[name]), size, rng))
        images = np.stack([c[0][:, :, ::-1] for c in crops]).astype(np.float32) / 255.0
        return (
            torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(np.stack([c[1] for c in crops]))[:, None],
            torch.from_numpy(np.stack([c[2] for c in crops]))[:, None],
            torch.tensor([c[3] for c in crops], dtype=torch.float32),
        )

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(build)
        while True:
            ready = pending.result()
            pending = pool.submit(build)
            yield ready


def loss_terms(
    density: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel term (MSE at the network's output scale) and count term (L1 per crop, relative)."""
    masked = density * mask
    pixel = ((masked - target) * DENSITY_SCALE).pow(2).sum() / mask.sum().clamp(min=1.0)
    predicted = masked.sum(dim=(1, 2, 3))
    # Divided by sqrt(count + 1): dense ShanghaiTech A crops do not drown the sparse ones.
    count = ((predicted - counts).abs() / (counts + 1.0).sqrt()).mean()
    return pixel, count


def learning_rate(step: int, progress: float, peak: float, warmup: int = 300) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay over ``progress`` in [0, 1]."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def load_sources(shared_dir: Path) -> dict[str, list[PointImage]]:
    return {
        "shanghaitech_b": load_shanghaitech_train(shared_dir, "B"),
        "shanghaitech_a": load_shanghaitech_train(shared_dir, "A"),
        "mall": load_mall_train(shared_dir, MALL_TRAIN_FRAMES),
    }


def train(args: argparse.Namespace) -> Path:
    """Run the training described by ``args``; returns the exported ONNX path."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = DensityNet(yolo_backbone(args.weights))
    if args.init:
        load_onnx_weights(net, args.init)  # fine-tune a counter already trained
    net = net.to(device)
    backbone, decoder = [], []
    for name, parameter in net.named_parameters():
        if name.startswith("to_p3.") and int(name.split(".")[1]) < FROZEN_LAYERS:
            parameter.requires_grad_(False)
        elif name.startswith("to_p"):
            backbone.append(parameter)
        else:
            decoder.append(parameter)
    optimiser = torch.optim.AdamW(
        [{"params": backbone, "scale": 0.2}, {"params": decoder, "scale": 1.0}],
        lr=args.lr,
        weight_decay=1e-4,
    )
    checkpoint = out / "checkpoint.pt"
    step = 0
    if args.export_only and not checkpoint.is_file():
        raise FileNotFoundError(f"--export-only: no checkpoint at {checkpoint}")
    if (args.resume or args.export_only) and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device)
        net.load_state_dict(state["net"])
        optimiser.load_state_dict(state["optimiser"])
        step = int(state["step"])
    started = time.monotonic()
    sources = load_sources(args.shared_dir)
    if args.real_beach > 0:
        sources["beach_webcam"] = load_beach_train(args.shared_dir)
    print(
        "loaded "
        + ", ".join(f"{name}: {len(items)} images" for name, items in sources.items())
        + f" in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    log = (out / "train_log.jsonl").open("a")
    data = batches(sources, args.batch, args.crop, args.seed + step, args.real_beach)
    last_save = time.monotonic()
    window: list[tuple[float, float]] = []
    net.train()

    def progress() -> float:
        # With --minutes the schedule follows the clock, so a slow or shared machine still ends
        # the run annealed within its time budget (the log records the steps it reached).
        done = step / args.steps
        if args.minutes:
            done = max(done, (time.monotonic() - started) / (60.0 * args.minutes))
        return float(min(1.0, done))

    while not args.export_only and progress() < 1.0:
        images, targets, masks, counts = (t.to(device) for t in next(data))
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, progress(), args.lr) * group["scale"]
        pixel, count = loss_terms(net(images), targets, masks, counts)
        loss = pixel + args.count_weight * count
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        optimiser.step()
        step += 1
        window.append((pixel.item(), count.item()))
        finished = progress() >= 1.0
        if step % 50 == 0 or finished:
            record = {
                "step": step,
                "pixel": round(float(np.mean([w[0] for w in window])), 4),
                "count": round(float(np.mean([w[1] for w in window])), 4),
                "lr": optimiser.param_groups[1]["lr"],
                "elapsed_s": round(time.monotonic() - started, 1),
            }
            window.clear()
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
        if time.monotonic() - last_save > args.save_every_s or finished:
            state = {"net": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step}
            torch.save(state, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
            last_save = time.monotonic()
    net.cpu()
    onnx_path = out / "crowd_counter.onnx"
    factor = 1.0
    if args.calibrate:
        from crowdwatch.edge.dense import DensityCounter
        from crowdwatch.training.calibrate import calibrate

        raw = out / "crowd_counter_uncalibrated.onnx"
        export_onnx(net, raw)
        calibration = calibrate(DensityCounter(raw, threads=args.threads or None), sources)
        factor = calibration.factor if calibration.helps else 1.0
        print(f"calibration {calibration.summary()}", flush=True)
        log.write(json.dumps({"step": step, "calibration": calibration.summary()}) + "\n")
    log.close()
    export_onnx(net, onnx_path, factor=factor)
    print(f"wrote {onnx_path} after {time.monotonic() - started:.0f} s", flush=True)
    return onnx_path


def add_arguments(parser: argparse.ArgumentParser, shared_dir: Path) -> None:
    parser.add_argument("--shared-dir", type=Path, default=shared_dir)
    parser.add_argument("--weights", type=Path, default=shared_dir / "models/yolo11n_coco.pt")
    parser.add_argument("--out", type=Path, default=Path("models/crowd_counter"))
    parser.add_argument(
        "--init", type=Path, help="start from this exported counter (.onnx) instead of YOLO11n"
    )
    parser.add_argument("--steps", type=int, default=9000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=320, help="crop side, a multiple of 32")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--minutes", type=float, default=0.0, help="time budget (0: none)")
    parser.add_argument("--count-weight", type=float, default=30.0)
    parser.add_argument(
        "--real-beach",
        type=float,
        default=0.0,
        help="share of crops from the labelled beach webcam days (held-out 18 Aug never)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--save-every-s", type=float, default=300.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="no training: load checkpoint.pt from --out, calibrate and export",
    )
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="export without the count calibration on the training images",
    )


def main(argv: Sequence[str] | None = None) -> None:
    from crowdwatch.contracts.config import default_shared_dir

    parser = argparse.ArgumentParser(prog="crowdwatch train counter")
    add_arguments(parser, default_shared_dir())
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
