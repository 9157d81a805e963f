"""The one registration rule of the package's datasets, and the one reading of $DETECTRON2_DATASETS."""
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from soft_teacher.data.datasets import dataset_root
from soft_teacher.data.datasets.catalog import register_dataset


def test_the_same_source_again_keeps_the_registration_and_its_loaded_metadata():
    register_dataset("catalog_same", lambda: [{"id": 1}], "owner a", ("x.json",), image_root="/x")
    MetadataCatalog.get("catalog_same").thing_classes = ["cat"]  # as loading a COCO json adds
    register_dataset("catalog_same", lambda: [{"id": 2}], "owner a", ("x.json",), image_root="/x")
    assert DatasetCatalog.get("catalog_same") == [{"id": 1}]
    assert MetadataCatalog.get("catalog_same").thing_classes == ["cat"]


def test_another_source_of_the_same_owner_replaces_it():
    register_dataset("catalog_moved", lambda: [{"id": 1}], "owner a", ("x.json",), image_root="/x")
    register_dataset("catalog_moved", lambda: [{"id": 2}], "owner a", ("y.json",), image_root="/y")
    assert DatasetCatalog.get("catalog_moved") == [{"id": 2}]
    assert MetadataCatalog.get("catalog_moved").image_root == "/y"


def test_a_name_taken_by_another_owner_or_by_detectron2_is_refused():
    register_dataset("catalog_taken", lambda: [], "owner a", ("x.json",))
    with pytest.raises(ValueError, match="owner b: dataset name 'catalog_taken' is already registered by owner a"):
        register_dataset("catalog_taken", lambda: [], "owner b", ("x.json",))
    with pytest.raises(ValueError, match="'coco_2017_val' is already registered by Detectron2 or other code"):
        register_dataset("coco_2017_val", lambda: [], "owner a", ("x.json",))
    assert MetadataCatalog.get("coco_2017_val").evaluator_type == "coco"  # untouched


def test_dataset_root_reads_the_environment_when_called(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert dataset_root() == "datasets"
    monkeypatch.setenv("DETECTRON2_DATASETS", "~/d2_data")
    assert dataset_root() == os.path.expanduser("~/d2_data")
