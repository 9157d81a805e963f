"""Random erasing of the student view: constant squares pasted over the image.

Erasing hides pixels but moves none: boxes and the view matrix are unchanged (the
student must still find an object whose parts were erased, as in the reference).
"""
from typing import Sequence

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import Transform

__all__ = ["EraseTransform", "RandomErasing"]


class EraseTransform(Transform):
    """Fill pixel rectangles with a constant; the geometry is the identity.

    Args:
        rects: ``(K, 4)`` int pixel index ranges ``[x0, y0, x1, y1)`` (x1, y1 exclusive).
        fill: value written into the rectangles.
    """

    def __init__(self, rects: np.ndarray, fill: float = 125):
        super().__init__()
        rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
        self._set_attributes(dict(rects=rects, fill=fill))

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        out = img.copy()  # the input may be shared (e.g. the decoded image both views start from)
        for x0, y0, x1, y1 in self.rects:
            out[y0:y1, x0:x1] = self.fill
        return out

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class RandomErasing(T.Augmentation):
    """Erase ``count`` squares (a number drawn uniformly in ``[count[0], count[1]]``).

    Each square's side is ``U(0, max_frac) x`` the image's shorter side (at least 1 px);
    its position is uniform among those that keep it inside the image.
    """

    def __init__(self, count: Sequence[int] = (1, 5), max_frac: float = 0.2, fill: float = 125):
        super().__init__()
        if len(count) != 2 or not 0 <= count[0] <= count[1]:
            raise ValueError(f"INPUT.ERASE_COUNT must be (min, max) with 0 <= min <= max, got {tuple(count)}")
        if not 0.0 < max_frac <= 1.0:
            raise ValueError(f"INPUT.ERASE_MAX_FRAC must be in (0, 1], got {max_frac}")
        self._init(dict(count=tuple(count), max_frac=max_frac, fill=fill))

    def get_transform(self, image: np.ndarray) -> EraseTransform:
        h, w = image.shape[:2]
        n = np.random.randint(self.count[0], self.count[1] + 1)
        sides = np.maximum(1, (np.random.uniform(0.0, self.max_frac, n) * min(h, w)).astype(np.int64))
        x0 = (np.random.uniform(size=n) * (w - sides + 1)).astype(np.int64)
        y0 = (np.random.uniform(size=n) * (h - sides + 1)).astype(np.int64)
        return EraseTransform(np.stack([x0, y0, x0 + sides, y0 + sides], axis=1), self.fill)
