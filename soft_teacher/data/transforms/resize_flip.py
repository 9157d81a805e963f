"""Detectron2's resize and flip, doing the pixel work with OpenCV.

Detectron2's ``ResizeTransform`` resamples uint8 images with PIL, and its flips return
negative-stride numpy views that every later OpenCV kernel must first copy slowly. At
COCO scale (short side 400-1200) PIL's resize costs about 10x ``cv2.resize`` and a
flipped view costs a 4 ms copy per kernel. These subclasses keep Detectron2's
geometry (``apply_coords``, ``apply_box``, ``inverse``, and so the view matrix) and
its random draws; they only replace ``apply_image``.
"""
import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import HFlipTransform, VFlipTransform
from PIL import Image

__all__ = ["CV2ResizeTransform", "CV2HFlipTransform", "CV2VFlipTransform", "CV2ResizeShortestEdge", "CV2RandomFlip"]

_PIL_TO_CV2_INTERP = {
    Image.NEAREST: cv2.INTER_NEAREST,
    Image.BILINEAR: cv2.INTER_LINEAR,
    Image.BICUBIC: cv2.INTER_CUBIC,
}


def _cv2_can_process(img: np.ndarray) -> bool:
    """uint8 / float32 images of shape (H, W) or (H, W, C<=4), which every cv2 kernel here accepts."""
    return img.dtype in (np.uint8, np.float32) and (img.ndim == 2 or (img.ndim == 3 and img.shape[2] <= 4))


def _keep_channel_axis(out: np.ndarray, img: np.ndarray) -> np.ndarray:
    """cv2 drops a single channel axis: (H, W, 1) comes back (H, W). Restore it."""
    return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out


class CV2ResizeTransform(T.ResizeTransform):
    """``ResizeTransform`` with ``cv2.resize`` for uint8/float32 images.

    Bilinear resampling shrinks with ``cv2.INTER_AREA`` (anti-aliased, like PIL's
    bilinear filter) and enlarges with ``cv2.INTER_LINEAR``. Both use cv2's pixel-centre
    alignment, which in Detectron2's continuous frame is exactly ``x' = x * new_w / w``,
    the mapping of ``apply_coords``. Other inputs go to Detectron2's implementation.
    """

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        interp = interp if interp is not None else self.interp
        if not _cv2_can_process(img) or interp not in _PIL_TO_CV2_INTERP:
            return super().apply_image(img, interp)
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"CV2ResizeTransform expects a {self.h}x{self.w} image, got {img.shape[0]}x{img.shape[1]}")
        flag = _PIL_TO_CV2_INTERP[interp]
        if flag == cv2.INTER_LINEAR and self.new_h < self.h and self.new_w < self.w:
            flag = cv2.INTER_AREA
        return _keep_channel_axis(cv2.resize(img, (self.new_w, self.new_h), interpolation=flag), img)

    def inverse(self) -> "CV2ResizeTransform":
        return CV2ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class CV2HFlipTransform(HFlipTransform):
    """``HFlipTransform`` returning a contiguous image flipped by ``cv2.flip`` (x -> W - x)."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if not _cv2_can_process(img):
            return super().apply_image(img)
        return _keep_channel_axis(cv2.flip(img, 1), img)


class CV2VFlipTransform(VFlipTransform):
    """``VFlipTransform`` returning a contiguous image flipped by ``cv2.flip`` (y -> H - y)."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if not _cv2_can_process(img):
            return super().apply_image(img)
        return _keep_channel_axis(cv2.flip(img, 0), img)


class CV2ResizeShortestEdge(T.ResizeShortestEdge):
    """Detectron2's ``ResizeShortestEdge`` (same arguments and size draw) producing :class:`CV2ResizeTransform`."""

    def get_transform(self, image: np.ndarray):
        tfm = super().get_transform(image)
        if isinstance(tfm, T.ResizeTransform):
            return CV2ResizeTransform(tfm.h, tfm.w, tfm.new_h, tfm.new_w, tfm.interp)
        return tfm


class CV2RandomFlip(T.RandomFlip):
    """Detectron2's ``RandomFlip`` (same arguments and draw) producing the cv2 flips above."""

    def get_transform(self, image: np.ndarray):
        tfm = super().get_transform(image)
        if isinstance(tfm, HFlipTransform):
            return CV2HFlipTransform(tfm.width)
        if isinstance(tfm, VFlipTransform):
            return CV2VFlipTransform(tfm.height)
        return tfm
