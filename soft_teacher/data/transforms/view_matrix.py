"""The 3x3 matrix of a view: where Detectron2 transforms move original pixel coordinates.

``transform_matrix(tfm)`` gives, for a ``Transform`` or a ``TransformList`` applied to
the original image, the ``(3, 3)`` matrix ``A`` with ``(x', y', 1) = A @ (x, y, 1)`` in
Detectron2's continuous pixel frame (pixel ``i`` covers ``[i, i + 1)``). A list composes
in order: ``A = A_n @ ... @ A_1``. Transforms that only change colours (photometric
ops, erasing, Detectron2's colour transforms) have the identity matrix; a transform
whose geometry is not known raises instead of silently giving a wrong matrix.
"""
from typing import Callable, Dict, Type

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    ScaleTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

from .affine import AffineTransform, translation_matrix
from .erasing import EraseTransform
from .photometric import PhotometricTransform

__all__ = ["transform_matrix", "register_transform_matrix"]


def _scale(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


# Most specific classes first: the first isinstance match wins.
_MATRIX_OF: Dict[Type[Transform], Callable[[Transform], np.ndarray]] = {
    AffineTransform: lambda t: t.matrix.copy(),
    T.ResizeTransform: lambda t: _scale(t.new_w / t.w, t.new_h / t.h),
    ScaleTransform: lambda t: _scale(t.new_w / t.w, t.new_h / t.h),
    HFlipTransform: lambda t: np.array([[-1.0, 0.0, t.width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
    VFlipTransform: lambda t: np.array([[1.0, 0.0, 0.0], [0.0, -1.0, t.height], [0.0, 0.0, 1.0]]),
    CropTransform: lambda t: translation_matrix(-t.x0, -t.y0),
}
_IDENTITY_GEOMETRY = (NoOpTransform, PhotometricTransform, EraseTransform, T.ColorTransform, BlendTransform)


def register_transform_matrix(cls: Type[Transform], matrix_fn: Callable[[Transform], np.ndarray]) -> None:
    """Declare the geometry of a custom transform class: ``matrix_fn(tfm)`` returns its (3, 3) matrix.

    It takes precedence over the known classes, so a subclass may redefine its parent's geometry.
    """
    global _MATRIX_OF
    _MATRIX_OF = {cls: matrix_fn, **{k: v for k, v in _MATRIX_OF.items() if k is not cls}}


def transform_matrix(tfm: Transform) -> np.ndarray:
    """The ``(3, 3)`` float64 matrix mapping input coordinates of ``tfm`` to its output coordinates."""
    if isinstance(tfm, TransformList):
        matrix = np.eye(3)
        for t in tfm.transforms:
            matrix = transform_matrix(t) @ matrix
        return matrix
    for cls, matrix_fn in _MATRIX_OF.items():
        if isinstance(tfm, cls):
            return np.asarray(matrix_fn(tfm), dtype=np.float64)
    if isinstance(tfm, _IDENTITY_GEOMETRY):
        return np.eye(3)
    known = sorted(c.__name__ for c in (*_MATRIX_OF, *_IDENTITY_GEOMETRY))
    raise TypeError(
        f"No view matrix is known for {type(tfm).__name__}: views may only use transforms of known geometry "
        f"({', '.join(known)}). Declare it with soft_teacher.data.transforms.register_transform_matrix."
    )
