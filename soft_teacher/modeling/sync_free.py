"""Box and ``Instances`` operations that read nothing back from the GPU.

Detectron2's own forms stop the host until the GPU has caught up: ``Boxes.clip`` asserts that every
coordinate is finite (one read-back per call), and indexing an ``Instances`` with a bool mask turns the
mask into indices once per field. A training step does this per image and per pseudo-label set, and
each stop leaves the GPU idle while the host queues the next kernels.
"""
from typing import Tuple

import torch

from detectron2.structures import Instances


def clip_boxes(boxes: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
    """``(N, 4)`` XYXY boxes clamped to an image of ``image_size`` ``(h, w)``: ``Boxes.clip`` without its
    finiteness check. An infinite coordinate becomes the image edge and NaN stays NaN; the pseudo-label
    diagnostics check the candidates once they are on the host (``soft_teacher.diagnostics.pseudo_label_counts``)."""
    height, width = image_size
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack(
        [x1.clamp(min=0, max=width), y1.clamp(min=0, max=height), x2.clamp(min=0, max=width),
         y2.clamp(min=0, max=height)], dim=1
    )


def select(instances: Instances, mask: torch.Tensor) -> Instances:
    """The rows of ``instances`` where the ``(N,)`` bool ``mask`` is true, in order: one read-back in all,
    where ``instances[mask]`` makes one per field."""
    return instances[mask.nonzero().squeeze(1)]
