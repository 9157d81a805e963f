"""Strong augmentations as Detectron2 transforms, and view matrices.

Every class here is a ``detectron2.data.transforms`` Augmentation or Transform, so they
compose with Detectron2's own in any mapper; :func:`transform_matrix` turns the
resulting ``TransformList`` into the view's 3x3 matrix.
"""
from .affine import AffineTransform, RandomAffine, rotation_matrix, shear_matrix, translation_matrix
from .erasing import EraseTransform, RandomErasing
from .order import RandomOrder
from .photometric import PhotometricTransform, RandomPhotometric
from .resize_flip import (
    CV2HFlipTransform,
    CV2RandomFlip,
    CV2ResizeShortestEdge,
    CV2ResizeTransform,
    CV2VFlipTransform,
)
from .view_matrix import register_transform_matrix, transform_matrix

__all__ = [
    "AffineTransform",
    "RandomAffine",
    "rotation_matrix",
    "shear_matrix",
    "translation_matrix",
    "EraseTransform",
    "RandomErasing",
    "RandomOrder",
    "PhotometricTransform",
    "RandomPhotometric",
    "CV2HFlipTransform",
    "CV2RandomFlip",
    "CV2ResizeShortestEdge",
    "CV2ResizeTransform",
    "CV2VFlipTransform",
    "register_transform_matrix",
    "transform_matrix",
]
