"""The one registration rule of the package's datasets, and the one reading of $DETECTRON2_DATASETS."""
import logging
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from helpers import captured_logs
from soft_teacher.data.datasets import catalog, dataset_root
from soft_teacher.data.datasets.catalog import register_dataset
from soft_teacher.data.datasets.coco_partial import register_coco_partial
from soft_teacher.data.datasets.shapes import register_shapes


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


@pytest.mark.parametrize("name, register, owner", [
    ("coco_2017_unlabel", lambda: register_coco_partial(dataset_root()), "the COCO partial splits"),
    ("shapes_val", register_shapes, "the shapes set"),
], ids=["coco_2017_unlabel", "shapes_val"])
def test_a_builtin_set_replaces_a_registration_of_its_name_by_other_code_with_a_warning(name, register, owner,
                                                                                        monkeypatch):
    """As when another semi-supervised codebase, imported before soft_teacher, registered the name (no metadata)."""
    ours = MetadataCatalog.get(name).image_root
    monkeypatch.delitem(catalog._REGISTERED, name)  # restored after the test, as is our registration below
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)

    def theirs():
        return [{"file_name": "theirs.jpg"}]

    DatasetCatalog.register(name, theirs)
    with captured_logs(catalog.__name__, level=logging.WARNING) as records:
        register()
    assert DatasetCatalog[name] is not theirs and MetadataCatalog.get(name).image_root == ours
    assert [r.getMessage() for r in records] == [
        f"Dataset '{name}' was already registered by Detectron2 or other code; soft_teacher's registration "
        f"({owner}) replaced it."
    ]


def test_dataset_root_reads_the_environment_when_called(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert dataset_root() == "datasets"
    monkeypatch.setenv("DETECTRON2_DATASETS", "~/d2_data")
    assert dataset_root() == os.path.expanduser("~/d2_data")
