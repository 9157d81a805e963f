"""Dataset mappers of the two training streams: labeled images and unlabeled weak/strong pairs.

Outputs follow ``docs/architecture.md``. Every view carries ``transform_matrix``, the
``(3, 3)`` float32 map from original pixel coordinates to the view's coordinates
(Detectron2's continuous frame), composed over all of the view's transforms.

Views (``build_view_augmentations``), each drawing its own randomness:

- labeled: resize (``INPUT.MIN_SIZE_TRAIN`` / ``MAX_SIZE_TRAIN`` / ``MIN_SIZE_TRAIN_SAMPLING``),
  flip (``INPUT.RANDOM_FLIP``), one photometric op (``INPUT.PHOTOMETRIC_OPS``);
- teacher (weak): resize, flip;
- student (strong): resize, flip, then one photometric op and one geometric op
  (``INPUT.STRONG_GEOMETRIC_OPS``) in a random order per image (:class:`RandomOrder`), then
  random erasing (``INPUT.ERASE_COUNT`` / ``ERASE_MAX_FRAC``).
"""
import copy
import logging
import multiprocessing
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.file_io import PathManager

from .transforms import (
    CV2RandomFlip,
    CV2ResizeShortestEdge,
    RandomAffine,
    RandomErasing,
    RandomOrder,
    RandomPhotometric,
    transform_matrix,
)

__all__ = [
    "VIEWS",
    "read_image",
    "strong_affine",
    "build_view_augmentations",
    "make_view",
    "LabeledDatasetMapper",
    "UnlabeledDatasetMapper",
]

logger = logging.getLogger(__name__)

VIEWS = ("labeled", "teacher", "student")
_CV2_CONVERSION = {"BGR": None, "RGB": cv2.COLOR_BGR2RGB}


def read_image(file_name: str, image_format: str) -> np.ndarray:
    """Decode an image file into an ``(H, W, C)`` uint8 array in ``image_format`` (EXIF orientation applied).

    "BGR" and "RGB" decode with OpenCV (about twice as fast as PIL for JPEG); other
    formats go to Detectron2's ``read_image``. Raises ``OSError`` naming the file if it
    is missing, empty or not a decodable image.
    """
    if image_format not in _CV2_CONVERSION:
        return utils.read_image(file_name, format=image_format)
    with PathManager.open(file_name, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise OSError(f"Cannot decode image file '{file_name}': it is empty or not an image.")
    conversion = _CV2_CONVERSION[image_format]
    return image if conversion is None else cv2.cvtColor(image, conversion)


def strong_affine(cfg, ops: Optional[Sequence[str]] = None) -> RandomAffine:
    """The student view's geometric augmentation: one of ``ops`` (default ``INPUT.STRONG_GEOMETRIC_OPS``)
    with the config's ``INPUT.STRONG_*`` magnitudes."""
    return RandomAffine(cfg.INPUT.STRONG_GEOMETRIC_OPS if ops is None else ops,
                        translate_frac=cfg.INPUT.STRONG_TRANSLATE_FRAC, rotate_deg=cfg.INPUT.STRONG_ROTATE_DEG,
                        shear_deg=cfg.INPUT.STRONG_SHEAR_DEG)


def build_view_augmentations(cfg, view: str) -> List[T.Augmentation]:
    """The augmentations of a training view ("labeled", "teacher" or "student"), from the config.

    An empty ``INPUT.PHOTOMETRIC_OPS`` or ``INPUT.STRONG_GEOMETRIC_OPS`` leaves that op out.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got '{view}'")
    augs = [CV2ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                  cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(CV2RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                                  vertical=cfg.INPUT.RANDOM_FLIP == "vertical"))
    strong = []
    if view in ("labeled", "student") and len(cfg.INPUT.PHOTOMETRIC_OPS):
        strong.append(RandomPhotometric(cfg.INPUT.PHOTOMETRIC_OPS, image_format=cfg.INPUT.FORMAT))
    if view == "student" and len(cfg.INPUT.STRONG_GEOMETRIC_OPS):
        strong.append(strong_affine(cfg))
    if len(strong) > 1:  # the reference's ShuffledSequential: the two ops in a random order per image
        augs.append(RandomOrder(strong))
    else:
        augs.extend(strong)
    if view == "student":
        augs.append(RandomErasing(cfg.INPUT.ERASE_COUNT, cfg.INPUT.ERASE_MAX_FRAC))
    return augs


def _to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _matrix_tensor(transforms: T.Transform) -> torch.Tensor:
    return torch.as_tensor(transform_matrix(transforms), dtype=torch.float32)


def make_view(augmentations: T.AugmentationList, image: np.ndarray) -> Dict[str, torch.Tensor]:
    """Augment ``image`` (HWC, original frame; not modified) into ``{"image": (C, H, W) uint8, "transform_matrix"}``."""
    aug_input = T.AugInput(image)
    transforms = augmentations(aug_input)
    return {"image": _to_chw_tensor(aug_input.image), "transform_matrix": _matrix_tensor(transforms)}


class LabeledDatasetMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` with the labeled view's augmentations and its ``transform_matrix``.

    Output (training): the input dict plus "image" (C, H, W) uint8 in ``INPUT.FORMAT``,
    "instances" (``gt_boxes`` in the labeled view, clipped; ``gt_classes``) and
    "transform_matrix" (3, 3) float32, original -> labeled view. Annotations are
    transformed as Detectron2 does (masks and keypoints too when the model uses them).
    Raises with the file name when the image is missing or unreadable.
    """

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        if is_train:
            augs = build_view_augmentations(cfg, "labeled")
            if cfg.INPUT.CROP.ENABLED:
                augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
            ret["augmentations"] = augs
        return ret

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        try:
            image = read_image(dataset_dict["file_name"], self.image_format)
        except OSError as e:
            raise OSError(f"Labeled image '{dataset_dict['file_name']}' cannot be read: {e}") from e
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        dataset_dict["image"] = _to_chw_tensor(image)
        dataset_dict["transform_matrix"] = _matrix_tensor(transforms)
        if not self.is_train:
            dataset_dict.pop("annotations", None)
        elif "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image.shape[:2])
        return dataset_dict


def _hidden_instances(annotations: List[dict], image_size) -> Instances:
    """Non-crowd annotations as ``Instances`` in the original frame (gt_boxes (N, 4) XYXY_ABS, gt_classes (N,))."""
    annos = [a for a in annotations if a.get("iscrowd", 0) == 0]
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    instances = Instances(image_size)
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.gt_classes = torch.tensor([a["category_id"] for a in annos], dtype=torch.int64)
    return instances


class UnlabeledDatasetMapper:
    """Read an unlabeled image once; return its teacher (weak) and student (strong) views.

    Output::

        {"file_name", "image_id", "height", "width",              # original image
         "teacher": {"image": (C, Ht, Wt) uint8, "transform_matrix": (3, 3) float32},
         "student": {"image": (C, Hs, Ws) uint8, "transform_matrix": (3, 3) float32},
         "hidden_instances": Instances}                            # only if the dict has annotations

    The two views draw their resize, flip and strong ops independently. Annotations of
    the input (COCO partial complements, shapes splits) become "hidden_instances"
    (original frame) for measuring pseudo-labels; nothing else of them is passed on, so
    the model cannot train on them.

    A missing or unreadable image is skipped: the mapper logs a warning with the file
    name, counts it in :attr:`num_skipped` (shared by all DataLoader workers) and returns
    None, on which Detectron2's ``MapDataset`` maps another image instead.
    """

    @configurable
    def __init__(self, *, teacher_augmentations: List[Union[T.Augmentation, T.Transform]],
                 student_augmentations: List[Union[T.Augmentation, T.Transform]], image_format: str):
        self.teacher_augmentations = T.AugmentationList(teacher_augmentations)
        self.student_augmentations = T.AugmentationList(student_augmentations)
        self.image_format = image_format
        self._num_skipped = multiprocessing.Value("q", 0)
        logger.info("[UnlabeledDatasetMapper] teacher view: %s; student view: %s",
                    teacher_augmentations, student_augmentations)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        if not is_train:
            raise ValueError("UnlabeledDatasetMapper makes training views only; use DatasetMapper(cfg, False) "
                             "for inference")
        return {
            "teacher_augmentations": build_view_augmentations(cfg, "teacher"),
            "student_augmentations": build_view_augmentations(cfg, "student"),
            "image_format": cfg.INPUT.FORMAT,
        }

    @property
    def num_skipped(self) -> int:
        """Images skipped so far because they were missing or unreadable, over all workers."""
        return self._num_skipped.value

    def __call__(self, dataset_dict: dict) -> Optional[dict]:
        file_name = dataset_dict["file_name"]
        try:
            image = read_image(file_name, self.image_format)
        except OSError as e:
            with self._num_skipped.get_lock():
                self._num_skipped.value += 1
                count = self._num_skipped.value
            logger.warning("Skipping unlabeled image '%s' (%s); %d unreadable unlabeled image(s) skipped so far.",
                           file_name, e, count)
            return None
        out = {k: dataset_dict[k] for k in ("file_name", "image_id", "height", "width") if k in dataset_dict}
        utils.check_image_size(out, image)
        out["teacher"] = make_view(self.teacher_augmentations, image)
        out["student"] = make_view(self.student_augmentations, image)
        if "annotations" in dataset_dict:
            out["hidden_instances"] = _hidden_instances(dataset_dict["annotations"], (out["height"], out["width"]))
        return out
