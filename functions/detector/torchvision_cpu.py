"""Let ultralytics run on the CPU-only torch wheel, whose torchvision ops cannot load.

PyPI's torchvision wheel is built against the CUDA torch build: its compiled ops library
needs libtorch_cuda, which the CPU torch wheel lacks, and ``import torchvision`` then fails
("operator torchvision::nms does not exist"). ultralytics imports torchvision during
prediction and uses exactly one compiled op, NMS. Before torchvision is imported,
:func:`install` registers that op with a plain-torch kernel (same result as torchvision's:
greedy, by decreasing score). Where torchvision's own library loads (CUDA images), it does
nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch

_library: Any = None  # kept alive: dropping the Library object drops its op definitions


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes = boxes.float()
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True)
    keep: list[torch.Tensor] = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        if rest.numel() == 0:
            break
        w = (torch.minimum(x2[best], x2[rest]) - torch.maximum(x1[best], x1[rest])).clamp_(min=0)
        h = (torch.minimum(y2[best], y2[rest]) - torch.maximum(y1[best], y1[rest])).clamp_(min=0)
        inter = w * h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou_threshold]
    return torch.stack(keep).to(torch.int64)


def _native_ops_load() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        library = Path(folder) / "_C.so"
        if library.exists():
            try:
                torch.ops.load_library(str(library))
            except (OSError, RuntimeError):
                return False
            return True
    return False


def install() -> bool:
    """Make ``import torchvision`` work; True when the fallback NMS was installed."""
    global _library
    if _library is not None:
        return True
    if "torchvision" in sys.modules or _native_ops_load():
        return False
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.impl("nms", nms, "CPU")

    import torchvision.ops.boxes

    def op_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        result: torch.Tensor = torch.ops.torchvision.nms(boxes, scores, float(iou_threshold))
        return result

    torchvision.ops.boxes.nms = op_nms  # batched_nms calls it through this module
    torchvision.ops.nms = op_nms
    return True
