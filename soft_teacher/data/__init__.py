"""Views, mappers, training loaders and datasets.

Importing it registers the COCO partial splits, ``coco_2017_unlabel`` and the synthetic
shapes set with Detectron2's ``DatasetCatalog``.
"""
from . import datasets  # noqa: F401  (dataset registration)
from .build import build_semisup_train_loader, build_supervised_train_loader
from .datasets import register_custom_datasets
from .mappers import LabeledDatasetMapper, UnlabeledDatasetMapper

__all__ = [
    "build_semisup_train_loader",
    "build_supervised_train_loader",
    "register_custom_datasets",
    "LabeledDatasetMapper",
    "UnlabeledDatasetMapper",
]
