"""Dataset registration: COCO partial splits, custom sets, the synthetic shapes set.

Importing this package registers, under :func:`dataset_root` (``$DETECTRON2_DATASETS``,
default ``./datasets``) like Detectron2's builtin sets, the COCO partial splits,
``coco_2017_unlabel`` and the shapes set. Custom sets from the config are registered by
:func:`register_custom_datasets`.
"""
from .catalog import dataset_root
from .coco_partial import register_coco_partial, split_coco, write_coco_splits
from .custom import load_image_folder, register_custom_coco, register_custom_datasets, register_image_folder
from .shapes import register_shapes
from .validation import check_boxes, check_categories

__all__ = [
    "dataset_root",
    "register_coco_partial",
    "split_coco",
    "write_coco_splits",
    "load_image_folder",
    "register_custom_coco",
    "register_custom_datasets",
    "register_image_folder",
    "check_boxes",
    "check_categories",
]

register_coco_partial(dataset_root())
register_shapes(dataset_root())
