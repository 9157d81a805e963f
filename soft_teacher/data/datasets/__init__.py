"""Dataset registration: COCO partial splits, custom sets, the synthetic shapes set.

Importing this package registers, under ``$DETECTRON2_DATASETS`` (default ``./datasets``)
like Detectron2's builtin sets, the COCO partial splits and ``coco_2017_unlabel``.
Custom sets from the config are registered by :func:`register_custom_datasets`.
"""
import os

from . import shapes  # noqa: F401  (registers shapes_train, shapes_val and their splits)
from .coco_partial import register_coco_partial, split_coco
from .custom import load_image_folder, register_custom_coco, register_custom_datasets, register_image_folder
from .validation import check_boxes, check_categories

__all__ = [
    "register_coco_partial",
    "split_coco",
    "load_image_folder",
    "register_custom_coco",
    "register_custom_datasets",
    "register_image_folder",
    "check_boxes",
    "check_categories",
]

register_coco_partial(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
