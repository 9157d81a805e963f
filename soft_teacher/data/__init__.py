"""Views, mappers, training loaders and datasets.

Importing it registers the COCO partial splits, ``coco_2017_unlabel`` and the synthetic
shapes set with Detectron2's ``DatasetCatalog``.
"""
from . import datasets  # noqa: F401  (dataset registration)
from .build import SemiSupervisedLoader, build_semisup_train_loader, build_supervised_train_loader, per_rank_batch_sizes
from .datasets import register_custom_datasets
from .mappers import LabeledDatasetMapper, UnlabeledDatasetMapper, build_view_augmentations, make_view, read_image

__all__ = [
    "SemiSupervisedLoader",
    "build_semisup_train_loader",
    "build_supervised_train_loader",
    "per_rank_batch_sizes",
    "register_custom_datasets",
    "LabeledDatasetMapper",
    "UnlabeledDatasetMapper",
    "build_view_augmentations",
    "make_view",
    "read_image",
]
