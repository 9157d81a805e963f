"""Random erasing of the student view: grey rectangles pasted over the image.

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
    """Erase ``n`` rectangles, ``n`` uniform in ``count[0] .. count[1]`` (both included).

    As the reference (microsoft/SoftTeacher ``RandErase`` with ``n_iterations=(1, 5)``,
    ``size=[0, 0.2]``, ``squared=True``): each rectangle draws one ratio ``r ~ U(0, max_frac)``
    and is ``int(r * H)`` pixels high and ``int(r * W)`` wide (proportional to the image, so
    not square unless the image is; it may be empty); its top-left pixel is uniform in
    ``0 .. W - w - 1`` and ``0 .. H - h - 1`` (numpy ``randint(0, W - w)``); it is filled with
    ``fill`` (grey 125 in every channel, the reference's ``img_fill_val``).
    """

    def __init__(self, count: Sequence[int] = (1, 4), max_frac: float = 0.2, fill: float = 125):
        super().__init__()
        if len(count) != 2 or not 0 <= count[0] <= count[1]:
            raise ValueError(f"INPUT.ERASE_COUNT must be (min, max) with 0 <= min <= max, got {tuple(count)}")
        if not 0.0 < max_frac < 1.0:
            raise ValueError(f"INPUT.ERASE_MAX_FRAC must be in (0, 1), got {max_frac}")
        self._init(dict(count=tuple(count), max_frac=max_frac, fill=fill))

    def get_transform(self, image: np.ndarray) -> EraseTransform:
        h, w = image.shape[:2]
        rects = []
        for _ in range(np.random.randint(self.count[0], self.count[1] + 1)):
            r = np.random.uniform(0.0, self.max_frac)
            rect_h, rect_w = int(r * h), int(r * w)
            x0, y0 = np.random.randint(0, w - rect_w), np.random.randint(0, h - rect_h)
            rects.append([x0, y0, x0 + rect_w, y0 + rect_h])
        return EraseTransform(np.array(rects, dtype=np.int64).reshape(-1, 4), self.fill)
