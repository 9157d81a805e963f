"""Custom data from the config: COCO-format labeled sets and plain folders of unlabeled images."""
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from helpers import CATEGORIES, REPO_ROOT, write_coco, write_folder
from soft_teacher.data import register_custom_datasets
from soft_teacher.data.datasets import load_image_folder
from soft_teacher.engine import ConfigError, load_config

DEMO_CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "soft_teacher_demo.yaml")


def test_config_sets_are_registered_once_and_load(tiny_cfg, tmp_path):
    json_file, image_root = write_coco(str(tmp_path / "lab"), [(32, 48), (40, 40)])
    write_folder(str(tmp_path / "unlab"), [(32, 48)])
    tiny_cfg.DATASETS.CUSTOM_COCO = (("custom_lab", json_file, image_root),)
    tiny_cfg.DATASETS.CUSTOM_UNLABELED_FOLDERS = [["custom_unlab", str(tmp_path / "unlab")]]  # as a yaml gives it
    assert register_custom_datasets(tiny_cfg) == ["custom_lab", "custom_unlab"]
    register_custom_datasets(tiny_cfg)  # idempotent
    labeled = DatasetCatalog.get("custom_lab")
    assert [d["image_id"] for d in labeled] == [100, 101] and len(labeled[0]["annotations"]) == 1
    assert MetadataCatalog.get("custom_lab").thing_classes == list(CATEGORIES)
    assert MetadataCatalog.get("custom_lab").evaluator_type == "coco"
    unlabeled = DatasetCatalog.get("custom_unlab")
    assert unlabeled == [{"file_name": str(tmp_path / "unlab" / "img_000.jpg"), "image_id": "img_000.jpg"}]


def test_image_folder_lists_images_in_subfolders_sorted_and_skips_other_files(tmp_path):
    write_folder(str(tmp_path / "b"), [(20, 20)])
    write_folder(str(tmp_path), [(20, 20), (20, 20)])
    os.rename(tmp_path / "img_001.jpg", tmp_path / "UPPER.JPG")
    (tmp_path / "labels.txt").write_text("not an image")
    ids = [d["image_id"] for d in load_image_folder(str(tmp_path), "folder_set")]
    assert ids == ["UPPER.JPG", "img_000.jpg", os.path.join("b", "img_000.jpg")]


def test_missing_or_empty_folder_says_which(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"'nowhere_set': image folder '{tmp_path}/nope' does not exist"):
        load_image_folder(str(tmp_path / "nope"), "nowhere_set")
    with pytest.raises(ValueError, match=f"'empty_set': folder '{tmp_path}' holds no images"):
        load_image_folder(str(tmp_path), "empty_set")


def test_negative_box_size_names_the_json_the_image_and_the_box(tiny_cfg, tmp_path):
    json_file, image_root = write_coco(str(tmp_path), [(32, 48)], bbox=[10, 5, -4, 8])
    tiny_cfg.DATASETS.CUSTOM_COCO = (("negative_box_set", json_file, image_root),)
    register_custom_datasets(tiny_cfg)
    with pytest.raises(ValueError, match=r"'negative_box_set' \(.*instances.json\): annotation #0 of image "
                                         r"'.*0000.png' .* negative size: bbox=\[10, 5, -4, 8\]"):
        DatasetCatalog.get("negative_box_set")


def test_missing_or_invalid_json_says_which(tiny_cfg, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    tiny_cfg.DATASETS.CUSTOM_COCO = (("missing_json_set", str(tmp_path / "none.json"), str(tmp_path)),
                                     ("broken_json_set", str(broken), str(tmp_path)))
    register_custom_datasets(tiny_cfg)
    with pytest.raises(FileNotFoundError, match="'missing_json_set': COCO json file .*none.json' does not exist"):
        DatasetCatalog.get("missing_json_set")
    with pytest.raises(ValueError, match="'broken_json_set': .*broken.json' is not a valid COCO instances json"):
        DatasetCatalog.get("broken_json_set")


def test_malformed_entries_and_name_clashes_are_rejected(tiny_cfg, tmp_path):
    tiny_cfg.DATASETS.CUSTOM_COCO = (("only_two_fields", "x.json"),)
    with pytest.raises(ValueError, match=r"DATASETS.CUSTOM_COCO entries must be \(name, json_file, image_root\)"):
        register_custom_datasets(tiny_cfg)
    tiny_cfg.DATASETS.CUSTOM_COCO = (("coco_2017_train", "x.json", str(tmp_path)),)
    with pytest.raises(ValueError, match="'coco_2017_train' is already registered by Detectron2"):
        register_custom_datasets(tiny_cfg)
    tiny_cfg.DATASETS.CUSTOM_COCO = (("shapes_val", "x.json", str(tmp_path)),)
    with pytest.raises(ValueError, match="'shapes_val' is already registered by the shapes set"):
        register_custom_datasets(tiny_cfg)


def test_re_registering_a_custom_name_with_new_files_replaces_it(tiny_cfg, tmp_path):
    first, root_a = write_coco(str(tmp_path / "a"), [(32, 48)])
    second, root_b = write_coco(str(tmp_path / "b"), [(32, 48), (32, 48)])
    for json_file, root, count in ((first, root_a, 1), (second, root_b, 2)):
        tiny_cfg.DATASETS.CUSTOM_COCO = (("replaced_set", json_file, root),)
        register_custom_datasets(tiny_cfg)
        assert len(DatasetCatalog.get("replaced_set")) == count
        assert MetadataCatalog.get("replaced_set").json_file == json_file


def test_load_config_registers_the_declared_sets_and_reports_a_clash_as_a_config_error(tmp_path):
    json_file, image_root = write_coco(str(tmp_path), [(32, 48)])
    load_config(DEMO_CONFIG, ["DATASETS.CUSTOM_COCO", repr((("loaded_set", json_file, image_root),))])
    assert len(DatasetCatalog.get("loaded_set")) == 1
    with pytest.raises(ConfigError, match="'coco_2017_train' is already registered"):
        load_config(DEMO_CONFIG, ["DATASETS.CUSTOM_COCO", repr((("coco_2017_train", json_file, image_root),))])
