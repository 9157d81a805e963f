"""Strong augmentations as Detectron2 transforms, and view matrices.

Every class here is a ``detectron2.data.transforms`` Augmentation or Transform, so they
compose with Detectron2's own in any mapper; :func:`transform_matrix` turns the
resulting ``TransformList`` into the view's 3x3 matrix.
"""
from .affine import RandomAffine
from .erasing import RandomErasing
from .order import RandomOrder
from .photometric import RandomPhotometric
from .resize_flip import CV2RandomFlip, CV2ResizeShortestEdge
from .view_matrix import register_transform_matrix, transform_matrix

__all__ = [
    "RandomAffine",
    "RandomErasing",
    "RandomOrder",
    "RandomPhotometric",
    "CV2RandomFlip",
    "CV2ResizeShortestEdge",
    "register_transform_matrix",
    "transform_matrix",
]
