"""Moving boxes between views of one image.

Every view carries ``transform_matrix`` A, a ``(3, 3)`` matrix that maps homogeneous
original pixel coordinates ``(x, y, 1)`` to that view's pixel coordinates. A point goes
from view ``a`` to view ``b`` with ``M = A_b @ inverse(A_a)``; an axis-aligned box goes
to the box enclosing its four transformed corners (exact for scale, flip and
translation; the tightest axis-aligned box for rotation and shear).

All arithmetic runs in float32 with autocast disabled, so a mixed-precision
training step does not invert matrices or move boxes in half precision.
"""
from typing import Tuple

import torch

from detectron2.structures import Boxes, Instances

# A box whose width or height in the target view is below this many pixels (after
# clipping to the image) is degenerate: it left the view or was squashed, and is dropped.
MIN_BOX_SIDE = 1.0


def _autocast_off(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def view_to_view_matrix(from_matrix: torch.Tensor, to_matrix: torch.Tensor) -> torch.Tensor:
    """The matrix ``M = A_to @ inverse(A_from)`` taking view ``from`` pixels to view ``to`` pixels.

    Args:
        from_matrix: ``(3, 3)`` original -> view ``from`` (e.g. the teacher view's A_t).
        to_matrix: ``(3, 3)`` original -> view ``to`` (e.g. the student view's A_s).

    Returns:
        ``(3, 3)`` float32 tensor on ``to_matrix``'s device.
    """
    for name, matrix in (("from_matrix", from_matrix), ("to_matrix", to_matrix)):
        if matrix.shape != (3, 3):
            raise ValueError(f"{name} must be a (3, 3) transform matrix, got shape {tuple(matrix.shape)}")
    with _autocast_off(to_matrix.device):
        from_matrix = from_matrix.to(device=to_matrix.device, dtype=torch.float32)
        return to_matrix.float() @ torch.linalg.inv(from_matrix)


def transform_boxes(boxes: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Map XYXY boxes through ``matrix``: transform the 4 corners, take their enclosing box.

    Args:
        boxes: ``(N, 4)`` XYXY_ABS boxes in the source view.
        matrix: ``(3, 3)`` source view -> target view (see :func:`view_to_view_matrix`).

    Returns:
        ``(N, 4)`` float32 XYXY_ABS boxes in the target view, not clipped.
    """
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
    """Map boxes into another view, clip them to it and drop the degenerate ones.

    Args:
        boxes: ``(N, 4)`` XYXY_ABS boxes in the source view.
        matrix: ``(3, 3)`` source view -> target view.
        image_size: ``(height, width)`` of the target view.
        min_side: boxes narrower or lower than this (pixels, after clipping) are dropped.

    Returns:
        ``(K, 4)`` float32 boxes in the target view, and the ``(N,)`` bool mask of the kept ones.
    """
    mapped = Boxes(transform_boxes(boxes, matrix))
    mapped.clip(image_size)
    widths, heights = mapped.tensor[:, 2] - mapped.tensor[:, 0], mapped.tensor[:, 3] - mapped.tensor[:, 1]
    keep = (widths >= min_side) & (heights >= min_side)
    return mapped.tensor[keep], keep


def instances_to_view(
    instances: Instances, matrix: torch.Tensor, image_size: Tuple[int, int], box_field: str = "gt_boxes"
) -> Instances:
    """:func:`boxes_to_view` for an ``Instances``: its ``box_field`` moves, the other fields follow.

    Returns:
        A new ``Instances`` of ``image_size`` (the target view) holding the kept instances.
    """
    boxes, keep = boxes_to_view(instances.get(box_field).tensor, matrix, image_size)
    moved = Instances(image_size)
    for name, value in instances.get_fields().items():
        moved.set(name, Boxes(boxes) if name == box_field else value[keep])
    return moved
