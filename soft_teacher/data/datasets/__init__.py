"""Dataset registration: COCO partial splits, custom sets, the synthetic shapes set.

Importing this package registers, under :func:`dataset_root` (``$DETECTRON2_DATASETS``,
default ``./datasets``) like Detectron2's builtin sets, the COCO partial splits,
``coco_2017_unlabel`` and the shapes set; a registration of these names by other code made
earlier is replaced, with a warning. Custom sets from the config are registered by
:func:`register_custom_datasets`.
"""
from . import coco_partial, shapes
from .catalog import dataset_root
from .coco_partial import write_coco_splits
from .custom import load_image_folder, register_custom_datasets

__all__ = [
    "dataset_root",
    "write_coco_splits",
    "load_image_folder",
    "register_custom_datasets",
]

coco_partial.register_coco_partial(dataset_root())
shapes.register_shapes(dataset_root())
