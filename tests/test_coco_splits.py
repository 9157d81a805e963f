"""COCO partial splits: the split convention, the split files (tools/make_coco_splits.py), and the registered
names."""
import json
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from helpers import write_coco
from soft_teacher.data.datasets import dataset_root, write_coco_splits
from soft_teacher.data.datasets.coco_partial import register_coco_partial, split_coco

# Image ids in file order: deliberately not sorted, so that "file order" matters.
IMAGE_IDS = [907, 12, 455, 3, 78, 1001, 64, 5, 333, 21, 870, 42, 9, 610, 77, 18, 250, 31, 700, 2]
# By hand: np.random.seed(1); np.random.choice(range(20), size=int(10 / 100 * 20), replace=False) -> [3, 16]
# and np.random.seed(3); np.random.choice(range(20), size=int(25 / 100 * 20), replace=False) -> [14, 2, 1, 17, 4].
EXPECTED_LABELED = {(10, 1): {IMAGE_IDS[3], IMAGE_IDS[16]},
                    (25, 3): {IMAGE_IDS[i] for i in (14, 2, 1, 17, 4)}}


def _coco():
    return {
        "info": {"description": "tiny"}, "licenses": [],
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 10, "width": 10} for i in IMAGE_IDS],
        "annotations": [{"id": k, "image_id": i, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0}
                        for k, i in enumerate(IMAGE_IDS + IMAGE_IDS[:5])],
        "categories": [{"id": 1, "name": "thing"}],
    }


@pytest.mark.parametrize("percent,fold", sorted(EXPECTED_LABELED))
def test_split_reproduces_the_hand_computed_split(percent, fold):
    coco = _coco()
    labeled, unlabeled = split_coco(coco, percent, fold)
    assert {img["id"] for img in labeled["images"]} == EXPECTED_LABELED[(percent, fold)]
    assert [img["id"] for img in labeled["images"] + unlabeled["images"]] != IMAGE_IDS  # labeled ones moved out
    assert sorted(img["id"] for img in labeled["images"] + unlabeled["images"]) == sorted(IMAGE_IDS)
    assert [img["id"] for img in unlabeled["images"]] == [i for i in IMAGE_IDS if i not in EXPECTED_LABELED[
        (percent, fold)]]  # file order kept
    for part in (labeled, unlabeled):
        ids = {img["id"] for img in part["images"]}
        assert {a["image_id"] for a in part["annotations"]} <= ids
        assert part["categories"] == coco["categories"] and part["info"] == coco["info"]
    assert len(labeled["annotations"]) + len(unlabeled["annotations"]) == len(coco["annotations"])


def test_splits_are_written_under_the_standard_file_names(tmp_path):
    annotations = tmp_path / "coco" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "instances_train2017.json").write_text(json.dumps(_coco()))
    written = write_coco_splits(str(annotations / "instances_train2017.json"), str(annotations), [10], [1])
    assert written == [str(annotations / "semi_supervised" / f"instances_train2017.1@10{suffix}.json")
                       for suffix in ("", "-unlabeled")]
    with open(annotations / "semi_supervised" / "instances_train2017.1@10.json") as f:
        labeled = json.load(f)
    with open(annotations / "semi_supervised" / "instances_train2017.1@10-unlabeled.json") as f:
        unlabeled = json.load(f)
    assert {img["id"] for img in labeled["images"]} == EXPECTED_LABELED[(10, 1)]
    assert len(unlabeled["images"]) == 18


@pytest.fixture
def coco_root(tmp_path):
    """A DETECTRON2_DATASETS root for the partial splits; the default registration is restored afterwards."""
    yield str(tmp_path)
    register_coco_partial(dataset_root())


def test_registered_split_loads_what_was_written(coco_root):
    coco_dir = os.path.join(coco_root, "coco")
    json_file, _ = write_coco(os.path.join(coco_dir, "source"), [(32, 48)] * 20, categories=("person",))
    os.rename(os.path.join(coco_dir, "source", "images"), os.path.join(coco_dir, "train2017"))
    with open(json_file) as f:
        coco = json.load(f)
    meta = MetadataCatalog.get("coco_2017_train")  # COCO's 80 categories with their (non-contiguous) ids
    coco["categories"] = [{"id": i, "name": meta.thing_classes[c]} for i, c in
                          meta.thing_dataset_id_to_contiguous_id.items()]
    os.makedirs(os.path.join(coco_dir, "annotations"))
    with open(os.path.join(coco_dir, "annotations", "instances_train2017.json"), "w") as f:
        json.dump(coco, f)
    annotations = os.path.join(coco_dir, "annotations")
    write_coco_splits(os.path.join(annotations, "instances_train2017.json"), annotations, [10], [2])
    register_coco_partial(coco_root)
    labeled = DatasetCatalog.get("coco_2017_train_10pct_2")
    unlabeled = DatasetCatalog.get("coco_2017_train_10pct_2_unlabeled")
    assert len(labeled) == 2 and len(unlabeled) == 18
    assert all(os.path.isfile(d["file_name"]) and d["annotations"] for d in labeled + unlabeled)


def test_missing_files_are_named_with_how_to_get_them(coco_root):
    register_coco_partial(coco_root)
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.4@5\.json.*\n.*python tools/make_coco_splits"
                                                r"\.py --coco-root .* --percent 5 --fold 4"):
        DatasetCatalog.get("coco_2017_train_5pct_4")
    with pytest.raises(FileNotFoundError, match=r"coco/unlabeled2017'.*download .*unlabeled2017\.zip"):
        DatasetCatalog.get("coco_2017_unlabel")


def test_all_standard_splits_and_unlabeled2017_are_registered_with_coco_metadata():
    names = [f"coco_2017_train_{p}pct_{s}{u}" for p in (1, 2, 5, 10) for s in range(1, 6) for u in ("", "_unlabeled")]
    for name in names:
        assert name in DatasetCatalog.list()
        assert len(MetadataCatalog.get(name).thing_classes) == 80
    assert "coco_2017_unlabel" in DatasetCatalog.list()
    assert MetadataCatalog.get("coco_2017_train_1pct_1").json_file.endswith(
        os.path.join("coco", "annotations", "semi_supervised", "instances_train2017.1@1.json"))
