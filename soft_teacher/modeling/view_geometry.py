"""Moving boxes between views of one image.

Every view carries ``transform_matrix`` A, a ``(3, 3)`` matrix from homogeneous original pixel
coordinates ``(x, y, 1)`` to that view's pixels. A point goes from view ``a`` to view ``b`` by
``M = A_b @ inverse(A_a)``; a box goes to the box enclosing its four mapped corners (exact for
scale, flip and translation; the tightest axis-aligned box for rotation and shear).
Arithmetic runs in float32 with autocast off, so mixed precision never inverts matrices in half.
"""
from typing import Tuple

import torch

from detectron2.structures import Boxes, Instances

from .sync_free import clip_boxes, select

# A box whose width or height in the target view is below this many pixels (after
# clipping to the image) is degenerate: it left the view or was squashed, and moving
# instances between views drops it.
MIN_BOX_SIDE = 1.0


def _autocast_off(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def view_to_view_matrix(from_matrix: torch.Tensor, to_matrix: torch.Tensor) -> torch.Tensor:
    """``(3, 3)`` float32 ``A_to @ inverse(A_from)``, from view ``from`` pixels to view ``to`` pixels."""
    for name, matrix in (("from_matrix", from_matrix), ("to_matrix", to_matrix)):
        if matrix.shape != (3, 3):
            raise ValueError(f"{name} must be a (3, 3) transform matrix, got shape {tuple(matrix.shape)}")
    with _autocast_off(to_matrix.device):
        from_matrix = from_matrix.to(device=to_matrix.device, dtype=torch.float32)
        return to_matrix.float() @ torch.linalg.inv(from_matrix)


def transform_boxes(boxes: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` XYXY_ABS boxes through ``matrix`` (source -> target view): ``(N, 4)`` float32, not clipped."""
    with _autocast_off(boxes.device):
        boxes = boxes.float()
        matrix = matrix.to(device=boxes.device, dtype=torch.float32)
        x1, y1, x2, y2 = boxes.unbind(dim=1)
        corners_x = torch.stack([x1, x2, x1, x2], dim=1)  # (N, 4)
        corners_y = torch.stack([y1, y1, y2, y2], dim=1)
        corners = torch.stack([corners_x, corners_y, torch.ones_like(corners_x)], dim=2)  # (N, 4, 3)
        mapped = corners @ matrix.T
        mapped = mapped[..., :2] / mapped[..., 2:]  # homogeneous divide; 1 for affine matrices
        return torch.cat([mapped.amin(dim=1), mapped.amax(dim=1)], dim=1)


def boxes_to_view(
    boxes: torch.Tensor, matrix: torch.Tensor, image_size: Tuple[int, int], min_side: float = MIN_BOX_SIDE
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Map ``(N, 4)`` boxes into the target view of ``image_size`` ``(h, w)``, clip, and mark degenerate ones.

    Returns the ``(N, 4)`` float32 mapped and clipped boxes (target view), degenerate ones included, and
    the ``(N,)`` bool mask of those kept.
    """
    mapped = clip_boxes(transform_boxes(boxes, matrix), image_size)
    widths, heights = mapped[:, 2] - mapped[:, 0], mapped[:, 3] - mapped[:, 1]
    return mapped, (widths >= min_side) & (heights >= min_side)


def instances_to_view(
    instances: Instances, matrix: torch.Tensor, image_size: Tuple[int, int], box_field: str = "gt_boxes"
) -> Instances:
    """:func:`boxes_to_view` for an ``Instances``: a new one of ``image_size`` (target view) with the kept
    instances, ``box_field`` moved and the other fields filtered alike."""
    boxes, keep = boxes_to_view(instances.get(box_field).tensor, matrix, image_size)
    moved = Instances(image_size)
    for name, value in instances.get_fields().items():
        moved.set(name, Boxes(boxes) if name == box_field else value)
    return select(moved, keep)
