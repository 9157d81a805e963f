"""The student view's geometric op: translate along x or y, rotate or shear, as one affine transform.

Matrices act on homogeneous coordinates ``(x, y, 1)`` in Detectron2's continuous pixel
frame (pixel ``i`` covers ``[i, i + 1)``, the image spans ``[0, W] x [0, H]``, the y axis
points down). ``cv2.warpAffine`` indexes pixel centres at integers, i.e. at ``i + 0.5``
in that frame; :class:`AffineTransform` converts between the two, so that the warped
pixels and ``apply_coords`` / ``apply_box`` agree exactly.
"""
import math
from typing import Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import Transform

from soft_teacher.config import GEOMETRIC_OPS

__all__ = [
    "AffineTransform",
    "RandomAffine",
    "translation_matrix",
    "rotation_matrix",
    "shear_matrix",
    "GEOMETRIC_OPS",
]


def translation_matrix(tx: float, ty: float) -> np.ndarray:
    """(3, 3) matrix moving points by ``(tx, ty)`` pixels."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _about(center: Tuple[float, float], linear: np.ndarray) -> np.ndarray:
    """The (3, 3) matrix applying the (2, 2) ``linear`` map around ``center`` (which stays fixed)."""
    m = np.eye(3)
    m[:2, :2] = linear
    return translation_matrix(*center) @ m @ translation_matrix(-center[0], -center[1])


def rotation_matrix(angle_deg: float, center: Tuple[float, float]) -> np.ndarray:
    """(3, 3) rotation by ``angle_deg`` about ``center``; the y axis points down, so positive turns clockwise."""
    a = math.radians(angle_deg)
    return _about(center, np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]))


def shear_matrix(x_deg: float, y_deg: float, center: Tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(3, 3) shear along x by ``x_deg`` then along y by ``y_deg``, about ``center`` (default: the origin).

    As the reference (microsoft/SoftTeacher ``RandShear``, mmcv ``imshear``), an angle ``a`` gives
    the shear factor ``tanh(a in radians)`` (0.48 at 30 degrees, where ``tan`` would give 0.58):
    shearing along x maps ``x -> x + tanh(a) * (y - cy)`` (rows slide sideways), along y
    ``y -> y + tanh(a) * (x - cx)``.
    """
    shear_x = np.array([[1.0, math.tanh(math.radians(x_deg))], [0.0, 1.0]])
    shear_y = np.array([[1.0, 0.0], [math.tanh(math.radians(y_deg)), 1.0]])
    return _about(center, shear_y @ shear_x)


# cv2 pixel indices <-> continuous coordinates: x_continuous = x_index + 0.5.
_INDEX_TO_CONTINUOUS = translation_matrix(0.5, 0.5)
_CONTINUOUS_TO_INDEX = translation_matrix(-0.5, -0.5)


class AffineTransform(Transform):
    """Warp an image by a (3, 3) affine matrix; the output has the input's size.

    Args:
        matrix: ``(3, 3)`` map from input to output coordinates (continuous frame), last row ``[0, 0, 1]``.
        height, width: the input (and output) image size.
        fill: value of the output pixels that come from outside the input.
        interp: cv2 interpolation flag for images.
    """

    def __init__(self, matrix: np.ndarray, height: int, width: int, fill: float = 125,
                 interp: int = cv2.INTER_LINEAR):
        super().__init__()
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.allclose(matrix[2], [0.0, 0.0, 1.0]):
            raise ValueError(f"AffineTransform needs a (3, 3) affine matrix with last row [0, 0, 1], got {matrix}")
        self._set_attributes(dict(matrix=matrix, height=height, width=width, fill=fill, interp=interp))

    def _warp(self, img: np.ndarray, interp: int, fill: float) -> np.ndarray:
        if img.shape[:2] != (self.height, self.width):
            raise ValueError(f"AffineTransform expects a {self.height}x{self.width} image, "
                             f"got {img.shape[0]}x{img.shape[1]}")
        index_matrix = (_CONTINUOUS_TO_INDEX @ self.matrix @ _INDEX_TO_CONTINUOUS)[:2]
        channels = 1 if img.ndim == 2 else img.shape[2]
        out = cv2.warpAffine(img, index_matrix, (self.width, self.height), flags=interp,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * min(channels, 4))
        return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._warp(img, self.interp, self.fill)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Nearest-neighbour warp; pixels from outside get 255, Detectron2's usual ignore label."""
        return self._warp(segmentation, cv2.INTER_NEAREST, 255)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` continuous ``(x, y)`` coordinates of the input to the output."""
        xy = np.asarray(coords, dtype=np.float64) @ self.matrix[:2, :2].T + self.matrix[:2, 2]
        return xy.astype(coords.dtype) if np.issubdtype(coords.dtype, np.floating) else xy

    def inverse(self) -> "AffineTransform":
        return AffineTransform(np.linalg.inv(self.matrix), self.height, self.width, self.fill, self.interp)


_OLD_OP_NAMES = {"translate": "'translate' is now two ops, 'translate_x' and 'translate_y' (as in the reference)"}


class RandomAffine(T.Augmentation):
    """Draw one geometric op uniformly from ``ops``, then its magnitude (the reference's ``OneOf``).

    - ``translate_x``: along x only, by ``U(-translate_frac, translate_frac)`` of the width;
    - ``translate_y``: along y only, by ``U(-translate_frac, translate_frac)`` of the height;
    - ``rotate``: by ``U(-rotate_deg, rotate_deg)`` degrees about the image centre;
    - ``shear``: along x then along y, angles ``U(-shear_deg, shear_deg)`` each, shear factor
      ``tanh(angle)``, about the image's top-left corner (:func:`shear_matrix`), as the
      reference's mmcv shear.

    With the default four ops: translate 1/2 (each axis 1/4), rotate 1/4, shear 1/4.
    """

    def __init__(self, ops: Sequence[str] = GEOMETRIC_OPS, translate_frac: float = 0.1, rotate_deg: float = 30.0,
                 shear_deg: float = 30.0, fill: float = 125):
        super().__init__()
        unknown = [op for op in ops if op not in GEOMETRIC_OPS]
        if unknown or len(ops) == 0:
            hints = "".join(f"; {_OLD_OP_NAMES[op]}" for op in unknown if op in _OLD_OP_NAMES)
            raise ValueError(f"INPUT.STRONG_GEOMETRIC_OPS must be a non-empty subset of {list(GEOMETRIC_OPS)}, "
                             f"got {list(ops)}{hints}")
        self._init(dict(ops=tuple(ops), translate_frac=translate_frac, rotate_deg=rotate_deg,
                        shear_deg=shear_deg, fill=fill))

    def get_transform(self, image: np.ndarray) -> AffineTransform:
        h, w = image.shape[:2]
        op = self.ops[np.random.randint(len(self.ops))]
        if op == "translate_x":
            matrix = translation_matrix(np.random.uniform(-self.translate_frac, self.translate_frac) * w, 0.0)
        elif op == "translate_y":
            matrix = translation_matrix(0.0, np.random.uniform(-self.translate_frac, self.translate_frac) * h)
        elif op == "rotate":
            matrix = rotation_matrix(np.random.uniform(-self.rotate_deg, self.rotate_deg), (w / 2.0, h / 2.0))
        else:
            matrix = shear_matrix(np.random.uniform(-self.shear_deg, self.shear_deg),
                                  np.random.uniform(-self.shear_deg, self.shear_deg))
        return AffineTransform(matrix, h, w, self.fill)
