"""Photometric operations of the labeled and student views (RandAugment's colour set).

``RandomPhotometric`` draws one operation per image from ``INPUT.PHOTOMETRIC_OPS`` and
returns a :class:`PhotometricTransform`. The operations reproduce PIL's ``ImageOps`` /
``ImageEnhance`` semantics (as used by the Soft Teacher reference implementation) with
OpenCV lookup tables and blends, several times faster than going through PIL. They move
no pixel: boxes, coordinates and the view matrix are unchanged.
"""
from typing import Sequence

import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import Transform

from soft_teacher.config import PHOTOMETRIC_OPS

__all__ = ["PhotometricTransform", "RandomPhotometric", "PHOTOMETRIC_OPS"]

# PIL's ImageFilter.SMOOTH kernel: the degenerate image of ImageEnhance.Sharpness.
_SMOOTH_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0
_VALUES = np.arange(256, dtype=np.float64)
_GRAY_CONVERSION = {"BGR": cv2.COLOR_BGR2GRAY, "RGB": cv2.COLOR_RGB2GRAY}


def _lut(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a (256,) table to every channel, or a (256, C) table channel by channel."""
    table = np.clip(np.round(table), 0, 255).astype(np.uint8)
    return cv2.LUT(img, table.reshape(256, 1, -1))


def _histograms(img: np.ndarray) -> np.ndarray:
    """(256, C) pixel counts per value and channel."""
    return np.stack([cv2.calcHist([img], [c], None, [256], [0, 256]).reshape(256) for c in range(img.shape[2])], axis=1)


def _autocontrast(img, level, image_format):
    """Stretch each channel linearly so that its darkest value becomes 0 and its brightest 255."""
    hist = _histograms(img)
    tables = []
    for c in range(img.shape[2]):
        present = np.flatnonzero(hist[:, c])
        lo, hi = present[0], present[-1]
        if hi <= lo:
            tables.append(_VALUES)
        else:
            tables.append(np.floor((_VALUES - lo) * (255.0 / (hi - lo))))
    return _lut(img, np.stack(tables, axis=1))


def _equalize(img, level, image_format):
    """Equalize each channel's histogram (PIL's ``ImageOps.equalize`` mapping)."""
    hist = _histograms(img).astype(np.int64)
    tables = []
    for c in range(img.shape[2]):
        h = hist[:, c]
        last = h[np.flatnonzero(h)[-1]]
        step = (h.sum() - last) // 255
        if step == 0:
            tables.append(_VALUES)
        else:
            below = np.concatenate([[0], np.cumsum(h)[:-1]])
            tables.append(np.minimum((step // 2 + below) // step, 255).astype(np.float64))
    return _lut(img, np.stack(tables, axis=1))


def _solarize(img, threshold, image_format):
    """Invert every value >= ``threshold`` (0-256)."""
    return _lut(img, np.where(_VALUES < threshold, _VALUES, 255 - _VALUES))


def _posterize(img, bits, image_format):
    """Keep the ``bits`` (1-8) most significant bits of every value."""
    mask = (0xFF << (8 - int(bits))) & 0xFF
    return _lut(img, (np.arange(256) & mask).astype(np.float64))


def _gray(img, image_format):
    return cv2.cvtColor(img, _GRAY_CONVERSION[image_format])


def _color(img, factor, image_format):
    """Blend with the grey image: 0 gives grey, 1 the image, >1 more saturated colours."""
    gray = cv2.cvtColor(_gray(img, image_format), cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(img, factor, gray, 1.0 - factor, 0.0)


def _contrast(img, factor, image_format):
    """Blend with the mean grey level: 0 gives a flat image, 1 the image."""
    mean = int(_gray(img, image_format).mean() + 0.5)
    return _lut(img, mean + factor * (_VALUES - mean))


def _brightness(img, factor, image_format):
    """Blend with black: 0 gives black, 1 the image."""
    return _lut(img, factor * _VALUES)


def _sharpness(img, factor, image_format):
    """Blend with a smoothed copy (border pixels kept): 0 blurs, 1 the image, >1 sharpens."""
    smooth = cv2.filter2D(img, -1, _SMOOTH_KERNEL, borderType=cv2.BORDER_REPLICATE)
    smooth[0, :], smooth[-1, :], smooth[:, 0], smooth[:, -1] = img[0, :], img[-1, :], img[:, 0], img[:, -1]
    return cv2.addWeighted(img, factor, smooth, 1.0 - factor, 0.0)


_OPERATIONS = {
    "identity": lambda img, level, image_format: img,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "solarize": _solarize,
    "color": _color,
    "contrast": _contrast,
    "brightness": _brightness,
    "sharpness": _sharpness,
    "posterize": _posterize,
}
assert set(_OPERATIONS) == set(PHOTOMETRIC_OPS)


def _check_ops(ops: Sequence[str]) -> None:
    unknown = [op for op in ops if op not in _OPERATIONS]
    if unknown:
        raise ValueError(f"Unknown photometric op(s) {unknown} (INPUT.PHOTOMETRIC_OPS); known: {list(PHOTOMETRIC_OPS)}")


class PhotometricTransform(Transform):
    """One photometric operation on a ``(H, W, 3)`` uint8 image; the geometry is the identity.

    Args:
        op: one of ``PHOTOMETRIC_OPS``.
        level: the operation's parameter: the enhancement factor for ``color``,
            ``contrast``, ``brightness`` and ``sharpness`` (1 leaves the image unchanged),
            the threshold (0-256) for ``solarize``, the kept bits (1-8) for ``posterize``;
            unused by ``identity``, ``autocontrast`` and ``equalize``.
        image_format: channel order, "BGR" or "RGB" (the grey level of ``color`` and
            ``contrast`` weighs the channels by it).
    """

    def __init__(self, op: str, level: float = 0.0, image_format: str = "BGR"):
        super().__init__()
        _check_ops([op])
        if image_format not in _GRAY_CONVERSION:
            raise ValueError(f"Photometric ops need INPUT.FORMAT 'BGR' or 'RGB', got '{image_format}'")
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"PhotometricTransform needs an (H, W, 3) uint8 image, got {img.dtype} {img.shape}")
        return _OPERATIONS[self.op](img, self.level, self.image_format)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class RandomPhotometric(T.Augmentation):
    """Draw one of ``ops`` uniformly and its strength, as RandAugment in the Soft Teacher reference.

    A magnitude ``m ~ U(0.1, 0.9)`` sets the level: enhancement factor ``0.1 + 1.8 m``
    (0.28-1.72), solarize threshold ``int(256 m)`` (25-230), posterize bits ``4 - int(4 m)`` (1-4).
    """

    def __init__(self, ops: Sequence[str] = PHOTOMETRIC_OPS, image_format: str = "BGR"):
        super().__init__()
        if len(ops) == 0:
            raise ValueError("RandomPhotometric needs at least one op (leave the augmentation out to disable it)")
        _check_ops(ops)
        self._init(dict(ops=tuple(ops), image_format=image_format))

    def get_transform(self, image: np.ndarray) -> PhotometricTransform:
        op = self.ops[np.random.randint(len(self.ops))]
        magnitude = np.random.uniform(0.1, 0.9)
        if op == "solarize":
            level = int(256 * magnitude)
        elif op == "posterize":
            level = 4 - int(4 * magnitude)
        else:
            level = 0.1 + 1.8 * magnitude
        return PhotometricTransform(op, level, self.image_format)
