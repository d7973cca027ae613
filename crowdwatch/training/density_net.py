"""The crowd counter's network: YOLO11n's backbone and a small top-down density decoder.

YOLO11n layers 0-10 (COCO-trained, so its features already respond to people) give feature maps at
1/8, 1/16 and 1/32 of the input. The decoder merges them top-down (as an FPN does) and predicts a
density map at 1/8: each cell holds the number of people whose head lies in those 8x8 pixels, so
the count of any region is the sum over its cells. This is the density-regression family of CSRNet
and DM-Count, sized for a CPU edge box (about 1.5 M parameters).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

STRIDE = 8
"""Input pixels per density cell (each side)."""
MULTIPLE = 32
"""Input height and width must be multiples of this (the 1/32 features)."""
DENSITY_SCALE = 100.0
"""The last layer predicts people per cell times this, so its outputs are of order 1."""


def _conv(channels_in: int, channels_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2), nn.ReLU(inplace=True)
    )


class DensityNet(nn.Module):
    """Image (RGB in [0, 1], ``(B, 3, H, W)``) → density ``(B, 1, H/8, W/8)``, people per cell."""

    def __init__(self, backbone: nn.ModuleList, width: int = 64) -> None:
        super().__init__()
        # YOLO11n: 0-4 end at 1/8 (128 ch), 5-6 at 1/16 (128 ch), 7-10 at 1/32 (256 ch).
        self.to_p3 = nn.Sequential(*backbone[0:5])
        self.to_p4 = nn.Sequential(*backbone[5:7])
        self.to_p5 = nn.Sequential(*backbone[7:11])
        self.lateral5 = nn.Conv2d(256, width, 1)
        self.lateral4 = nn.Conv2d(128, width, 1)
        self.lateral3 = nn.Conv2d(128, width, 1)
        self.fuse4 = _conv(width, width, 3)
        self.fuse3 = _conv(width, width, 3)
        self.head = nn.Sequential(_conv(width, width // 2, 3), nn.Conv2d(width // 2, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        p3 = self.to_p3(image)
        p4 = self.to_p4(p3)
        p5 = self.to_p5(p4)
        top = self.lateral5(p5)
        top = self.fuse4(F.interpolate(top, scale_factor=2.0, mode="nearest") + self.lateral4(p4))
        top = self.fuse3(F.interpolate(top, scale_factor=2.0, mode="nearest") + self.lateral3(p3))
        # ReLU: a density is never negative, and an empty scene can reach exactly 0.
        density: torch.Tensor = F.relu(self.head(top)) / DENSITY_SCALE
        return density


def yolo_backbone(weights: Path) -> nn.ModuleList:
    """Layers 0-10 of a YOLO11n checkpoint, in float32, for fine-tuning."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    model = YOLO(str(weights)).model
    layers: nn.ModuleList = model.model.float()[:11]  # type: ignore[union-attr]
    for layer in layers:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    return layers


def load_onnx_weights(net: DensityNet, path: Path) -> None:
    """Set ``net``'s weights from an ONNX file this module exported (to fine-tune a shipped model).

    The export keeps parameter names and the YOLO checkpoint's convolutions carry no batch norm,
    so every ONNX initializer is one parameter; a file from another network is refused by name.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    arrays = {item.name: numpy_helper.to_array(item) for item in model.graph.initializer}
    state = net.state_dict()
    missing = sorted(set(state) - set(arrays))
    if missing:
        raise ValueError(f"{path}: not a crowd counter of this architecture (no {missing[0]})")
    net.load_state_dict({name: torch.from_numpy(arrays[name].copy()) for name in state})


class _Scaled(nn.Module):
    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        self.net = net
        self.factor = factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        scaled: torch.Tensor = self.net(image) * self.factor
        return scaled


def export_onnx(net: DensityNet, path: Path, opset: int = 17, factor: float = 1.0) -> None:
    """Write the network as ONNX with free height and width (multiples of 32), batch 1.

    Args:
        net: the trained network.
        path: the .onnx file to write.
        opset: ONNX opset.
        factor: count calibration folded into the output (:mod:`crowdwatch.training.calibrate`).
    """
    net.eval()
    model: nn.Module = net if factor == 1.0 else _Scaled(net, factor)
    sample = torch.zeros(1, 3, 256, 320)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter (as Ultralytics uses) needs no onnxscript; torch marks it and
        # helpers it calls deprecated, in favour of the torch.export one, which would add that
        # dependency. The tests check the exported model against torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            input_names=["images"],
            output_names=["density"],
            dynamic_axes={"images": {2: "height", 3: "width"}, "density": {2: "rows", 3: "cols"}},
            opset_version=opset,
            dynamo=False,
        )
