"""COCO partial splits (1/2/5/10% of train2017 labeled) and COCO's unlabeled2017 images.

The standard splits of semi-supervised COCO: for fold (seed) ``s`` and percent ``p``,
numpy's RNG seeded with ``s`` draws ``np.random.choice(range(N), size=int(p / 100 * N),
replace=False)`` over the ``N`` images of ``instances_train2017.json`` in file order;
the drawn images are labeled, the others form the unlabeled complement (whose
annotations are only used to measure pseudo-label quality). :func:`write_coco_splits`
(``tools/make_coco_splits.py``) writes them next to the COCO annotations:

.. code-block:: none

    $DETECTRON2_DATASETS/coco/annotations/semi_supervised/instances_train2017.{s}@{p}.json
    $DETECTRON2_DATASETS/coco/annotations/semi_supervised/instances_train2017.{s}@{p}-unlabeled.json

Registered names (lazily, like Detectron2's builtin sets; a missing file fails only
when the set is loaded): ``coco_2017_train_{p}pct_{s}`` and
``coco_2017_train_{p}pct_{s}_unlabeled`` for ``p`` in 1, 2, 5, 10 and ``s`` in 1-5,
and ``coco_2017_unlabel`` (the images of ``coco/unlabeled2017``, no json needed).
"""
import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata

from .catalog import register_dataset
from .custom import load_checked_coco_json, load_image_folder

__all__ = [
    "PARTIAL_PERCENTS",
    "PARTIAL_FOLDS",
    "partial_split_indices",
    "split_coco",
    "split_json_paths",
    "write_coco_splits",
    "register_coco_partial",
]

PARTIAL_PERCENTS = (1, 2, 5, 10)
PARTIAL_FOLDS = (1, 2, 3, 4, 5)
_OWNER = "the COCO partial splits"


def partial_split_indices(num_images: int, percent: float, fold: int) -> np.ndarray:
    """Sorted indices (into the json's image list) of the labeled images of split ``fold@percent``.

    ``np.random.RandomState(fold).choice`` draws exactly what ``np.random.seed(fold)``
    followed by ``np.random.choice`` draws, without touching numpy's global state.
    """
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    size = int(percent / 100 * num_images)
    return np.sort(np.random.RandomState(fold).choice(range(num_images), size=size, replace=False))


def split_coco(coco: Dict, percent: float, fold: int) -> Tuple[Dict, Dict]:
    """Split a COCO instances json (as a dict) into its labeled part and unlabeled complement.

    Both keep the file order of images and annotations, each image's annotations, and
    every other top-level field (categories, info, licenses) unchanged.
    """
    images = coco["images"]
    labeled = np.zeros(len(images), dtype=bool)
    labeled[partial_split_indices(len(images), percent, fold)] = True
    labeled_ids = {img["id"] for img, keep in zip(images, labeled) if keep}
    parts = []
    for want_labeled in (True, False):
        part = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
        part["images"] = [img for img, keep in zip(images, labeled) if keep == want_labeled]
        part["annotations"] = [a for a in coco.get("annotations", []) if (a["image_id"] in labeled_ids) == want_labeled]
        parts.append(part)
    return parts[0], parts[1]


def _percent_name(percent: float) -> str:
    return f"{percent:g}"


def split_json_paths(annotation_dir: str, percent: float, fold: int) -> Tuple[str, str]:
    """The (labeled, unlabeled) json paths of split ``fold@percent`` under COCO's ``annotations`` folder."""
    stem = os.path.join(annotation_dir, "semi_supervised", f"instances_train2017.{fold}@{_percent_name(percent)}")
    return stem + ".json", stem + "-unlabeled.json"


def write_coco_splits(
    annotation_file: str, annotation_dir: str, percents: Sequence[float], folds: Sequence[int]
) -> List[str]:
    """Write the labeled part and the unlabeled complement of split ``fold@percent`` for every percent and fold.

    Reads ``annotation_file`` (COCO's ``instances_train2017.json``) once, splits it with :func:`split_coco`
    and writes each part to its :func:`split_json_paths` under ``annotation_dir`` (COCO's ``annotations``
    folder), printing each file with its image and annotation counts. Returns the paths written, in that order.
    """
    print(f"Reading {annotation_file} ...")
    with open(annotation_file) as f:
        coco = json.load(f)
    os.makedirs(os.path.join(annotation_dir, "semi_supervised"), exist_ok=True)
    written = []
    for percent in percents:
        for fold in folds:
            for part, path in zip(split_coco(coco, percent, fold), split_json_paths(annotation_dir, percent, fold)):
                with open(path, "w") as f:
                    json.dump(part, f)
                print(f"{path}: {len(part['images'])} images, {len(part['annotations'])} annotations")
                written.append(path)
    return written


def _load_split(name: str, json_file: str, image_root: str, percent: int, fold: int, coco_root: str) -> List[dict]:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"Dataset '{name}' needs the COCO partial split file '{json_file}', which does not exist. Create it "
            f"from instances_train2017.json with:\n    python tools/make_coco_splits.py --coco-root {coco_root} "
            f"--percent {percent} --fold {fold}"
        )
    return load_checked_coco_json(json_file, image_root, name)


def _load_unlabeled2017(name: str, folder: str) -> List[dict]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Dataset '{name}' needs COCO's unlabeled images in '{folder}', which does not exist: download "
            "http://images.cocodataset.org/zips/unlabeled2017.zip and unzip it there."
        )
    return load_image_folder(folder, name)


def register_coco_partial(root: str) -> List[str]:
    """Register the partial splits and ``coco_2017_unlabel`` with data under ``root/coco``; return the names.

    Calling it again with another root replaces the previous registration of these names.
    """
    coco_root = os.path.join(root, "coco")
    annotation_dir = os.path.join(coco_root, "annotations")
    image_root = os.path.join(coco_root, "train2017")
    metadata = _get_builtin_metadata("coco")
    names = []
    for percent in PARTIAL_PERCENTS:
        for fold in PARTIAL_FOLDS:
            for suffix, json_file in zip(("", "_unlabeled"), split_json_paths(annotation_dir, percent, fold)):
                name = f"coco_2017_train_{percent}pct_{fold}{suffix}"
                register_dataset(name, lambda n=name, j=json_file, p=percent, f=fold: _load_split(
                    n, j, image_root, p, f, coco_root), _OWNER, (json_file, image_root), builtin=True,
                    json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata)
                names.append(name)
    # Images only: no categories, so that it can serve as unlabeled data for any labeled set.
    unlabeled_root = os.path.join(coco_root, "unlabeled2017")
    register_dataset("coco_2017_unlabel", lambda: _load_unlabeled2017("coco_2017_unlabel", unlabeled_root),
                     _OWNER, unlabeled_root, builtin=True, image_root=unlabeled_root)
    names.append("coco_2017_unlabel")
    return names
