"""The training loaders: per-iteration counts, rank shards, reproducibility, bad-input messages."""
import itertools
import json
import os
import re

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.utils import comm

from helpers import write_coco, write_folder
from soft_teacher.data import build_semisup_train_loader, build_supervised_train_loader

LANDSCAPE, PORTRAIT = (48, 64), (64, 48)


@pytest.fixture
def semisup_cfg(tiny_cfg, tmp_path, request):
    """6 labeled images (COCO json) and 8 unlabeled ones (a folder), half landscape, half portrait, declared in
    DATASETS.CUSTOM_*; the loaders register them."""
    name = request.node.name.replace("[", "_").replace("]", "")
    json_file, image_root = write_coco(str(tmp_path / "labeled"), [LANDSCAPE, PORTRAIT] * 3)
    write_folder(str(tmp_path / "unlabeled"), [LANDSCAPE, PORTRAIT] * 4)
    tiny_cfg.DATASETS.CUSTOM_COCO = ((f"{name}_labeled", json_file, image_root),)
    tiny_cfg.DATASETS.CUSTOM_UNLABELED_FOLDERS = ((f"{name}_unlabeled", str(tmp_path / "unlabeled")),)
    tiny_cfg.DATASETS.TRAIN = (f"{name}_labeled",)
    tiny_cfg.DATASETS.TRAIN_UNLABELED = (f"{name}_unlabeled",)
    tiny_cfg.SOLVER.IMS_PER_BATCH = 1
    tiny_cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 4
    return tiny_cfg


def _take(loader, n):
    return list(itertools.islice(loader, n))


def _fake_world(monkeypatch, world_size, rank):
    monkeypatch.setattr(comm, "get_world_size", lambda: world_size)
    monkeypatch.setattr(comm, "get_rank", lambda: rank)
    monkeypatch.setattr("detectron2.data.build.get_world_size", lambda: world_size)


def test_loader_registers_the_custom_sets_of_a_config_not_read_by_load_config(semisup_cfg):
    """A config built in Python (get_cfg and assignments) declares its sets in DATASETS.CUSTOM_* only."""
    assert not set(semisup_cfg.DATASETS.TRAIN + semisup_cfg.DATASETS.TRAIN_UNLABELED) & set(DatasetCatalog.list())
    batch = next(iter(build_semisup_train_loader(semisup_cfg)))
    assert len(batch["labeled"]) == 1 and len(batch["labeled"][0]["instances"]) == 1
    assert len(batch["unlabeled"]) == 4


def test_each_iteration_gets_the_configured_numbers_of_images(semisup_cfg):
    for batch in _take(build_semisup_train_loader(semisup_cfg), 3):
        assert set(batch) == {"labeled", "unlabeled"}
        assert len(batch["labeled"]) == 1 and len(batch["unlabeled"]) == 4
        assert "instances" in batch["labeled"][0] and "transform_matrix" in batch["labeled"][0]
        assert {"teacher", "student"} <= set(batch["unlabeled"][0])


def test_aspect_ratio_grouping_batches_one_orientation(semisup_cfg):
    for batch in _take(build_semisup_train_loader(semisup_cfg), 4):
        assert len({d["width"] > d["height"] for d in batch["unlabeled"]}) == 1


def test_each_rank_gets_its_share_and_its_own_shard(semisup_cfg, monkeypatch):
    semisup_cfg.SOLVER.IMS_PER_BATCH = 2
    semisup_cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    seen = []
    for rank in (0, 1):
        _fake_world(monkeypatch, 2, rank)
        batches = _take(build_semisup_train_loader(semisup_cfg), 2)
        assert all(len(b["labeled"]) == 1 and len(b["unlabeled"]) == 2 for b in batches)
        seen.append({d["file_name"] for b in batches for d in b["unlabeled"]})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 8  # one epoch of 8 images split between ranks


def test_batch_sizes_must_divide_by_the_number_of_gpus(semisup_cfg, monkeypatch):
    _fake_world(monkeypatch, 2, 0)
    semisup_cfg.SOLVER.IMS_PER_BATCH = 2
    semisup_cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 3
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH_UNLABELED = 3 .* multiple of the number of GPUs \(2\)"):
        build_semisup_train_loader(semisup_cfg)


def test_seeded_multi_worker_loader_is_reproducible(semisup_cfg):
    semisup_cfg.DATALOADER.NUM_WORKERS = 2
    runs = [_take(build_semisup_train_loader(semisup_cfg), 2) for _ in range(2)]
    for first, second in zip(*runs):
        for a, b in zip(first["unlabeled"], second["unlabeled"]):
            assert a["file_name"] == b["file_name"]
            assert torch.equal(a["student"]["image"], b["student"]["image"])
            assert torch.equal(a["teacher"]["transform_matrix"], b["teacher"]["transform_matrix"])
        assert torch.equal(first["labeled"][0]["image"], second["labeled"][0]["image"])


def test_unreadable_unlabeled_images_are_skipped_and_training_goes_on(semisup_cfg, tmp_path):
    semisup_cfg.DATALOADER.NUM_WORKERS = 1  # the skip count is shared by the worker processes
    loader = build_semisup_train_loader(semisup_cfg)
    os.remove(tmp_path / "unlabeled" / "img_000.jpg")  # vanishes after the folder was listed
    (tmp_path / "unlabeled" / "img_001.jpg").write_bytes(b"truncated")
    batches = _take(loader, 4)
    assert all(len(b["unlabeled"]) == 4 for b in batches)
    assert loader.num_skipped_unlabeled >= 1


def test_empty_unlabeled_folder_fails_clearly(semisup_cfg, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    semisup_cfg.DATASETS.CUSTOM_UNLABELED_FOLDERS = (("empty_folder_set", str(empty)),)
    semisup_cfg.DATASETS.TRAIN_UNLABELED = ("empty_folder_set",)
    with pytest.raises(ValueError, match=f"'empty_folder_set'.*'{empty}' holds no images"):
        build_semisup_train_loader(semisup_cfg)


def test_training_and_test_categories_must_match(semisup_cfg, tmp_path):
    json_file, image_root = write_coco(str(tmp_path / "test"), [LANDSCAPE], categories=("cat", "dog", "horse"))
    semisup_cfg.DATASETS.CUSTOM_COCO += (("mismatched_test_set", json_file, image_root),)
    semisup_cfg.DATASETS.TEST = ("mismatched_test_set",)
    with pytest.raises(ValueError, match=r"DATASETS.TEST set 'mismatched_test_set' \(.*instances.json\) has "
                                         r"categories \['cat', 'dog', 'horse'\].*only in .*\['bird'\]"):
        build_semisup_train_loader(semisup_cfg)


def test_class_count_must_match_the_model(semisup_cfg):
    semisup_cfg.MODEL.ROI_HEADS.NUM_CLASSES = 5
    with pytest.raises(ValueError, match="has 3 categories .* set MODEL.ROI_HEADS.NUM_CLASSES 3"):
        build_semisup_train_loader(semisup_cfg)


def test_supervised_loader_yields_labeled_batches(semisup_cfg):
    semisup_cfg.SOLVER.IMS_PER_BATCH = 2
    batch = next(iter(build_supervised_train_loader(semisup_cfg)))
    assert len(batch) == 2 and all(len(d["instances"]) == 1 for d in batch)


@pytest.mark.parametrize("build", [build_semisup_train_loader, build_supervised_train_loader])
def test_missing_labeled_images_are_reported_when_the_loader_is_built(semisup_cfg, tmp_path, build):
    """Every path is checked up front: one error with the count, the first five paths and where to look."""
    images = tmp_path / "labeled" / "images"
    for path in images.iterdir():
        path.unlink()
    listed = "".join(rf"\n    {re.escape(str(images / f'{i:04d}.png'))}" for i in range(5))
    with pytest.raises(FileNotFoundError, match=rf"6 of the 6 images of \S+_labeled do not exist:{listed}\n    "
                                                rf"\.\.\. and 1 more\nImage roots: .*Check \$DETECTRON2_DATASETS"):
        build(semisup_cfg)


def test_labeled_statistics_count_the_images_without_boxes_that_training_leaves_out(semisup_cfg):
    """Pseudo boxes are counted on every unlabeled image, empty ones included, so the labeled reference is too."""
    _, path, _ = semisup_cfg.DATASETS.CUSTOM_COCO[0]
    with open(path) as f:
        coco = json.load(f)
    coco["annotations"] = coco["annotations"][:4]  # the last 2 of the 6 images hold no box
    with open(path, "w") as f:
        json.dump(coco, f)
    assert semisup_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    loader = build_semisup_train_loader(semisup_cfg)
    assert loader.labeled_statistics.images == 6
    assert loader.labeled_statistics.boxes_per_image == pytest.approx(4 / 6)
    assert all(len(batch["labeled"][0]["instances"]) == 1 for batch in _take(loader, 12))


def test_a_labeled_set_without_a_box_to_train_on_is_refused_with_what_to_check(semisup_cfg):
    _, path, _ = semisup_cfg.DATASETS.CUSTOM_COCO[0]
    with open(path) as f:
        coco = json.load(f)
    for annotation in coco["annotations"]:
        annotation["image_id"] = 99999  # an image id the json does not have
    with open(path, "w") as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match=r"has a non-crowd box to train on: check that the annotations' image_id"):
        build_semisup_train_loader(semisup_cfg)
