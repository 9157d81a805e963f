"""The built-in synthetic detection set ``shapes``: seeded, COCO-format, generated on first use.

The images and their boxes are drawn by :mod:`.shapes_render`; this module writes them
as a COCO-format set, re-uses a stored set whose manifest matches, and registers it.
The same seed gives byte-identical images and json files.

Registered names (loaded lazily, generated under ``$DETECTRON2_DATASETS/shapes/`` on
first use, default ``./datasets``): ``shapes_train`` (3000 images), ``shapes_val``
(400 images), ``shapes_test`` (400 more images from the same generator, drawn from their own
seed sequence; held out: nothing is chosen by its score), and for ``p`` in 1, 5, 10 and fold ``s`` in 1-5 the labeled split
``shapes_train_{p}pct_{s}`` and its complement ``shapes_train_{p}pct_{s}_unlabeled``.
Splits follow COCO's partial-split convention
(:func:`soft_teacher.data.datasets.coco_partial.partial_split_indices`).
The unlabeled splits keep their annotations: the unlabeled mapper moves them to
``hidden_instances`` to measure pseudo-label precision and recall, never to train.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from detectron2.data.datasets import load_coco_json
from tqdm import tqdm

from .catalog import dataset_root, register_dataset
from .coco_partial import partial_split_indices
from .shapes_render import SHAPE_CLASSES, SUBSETS, render_image

logger = logging.getLogger(__name__)

__all__ = [
    "generate_shapes",
    "ensure_shapes",
    "register_shapes",
]

# Bump whenever shapes_render draws other images or the json changes: a stored set of another
# version is regenerated. (2: the test subset; train and val are unchanged.)
GENERATOR_VERSION = 2
DEFAULT_SEED = 2021
NUM_TRAIN_IMAGES = 3000
NUM_VAL_IMAGES = 400  # also the size of the test subset
SPLIT_PERCENTS = (1, 5, 10)
SPLIT_FOLDS = (1, 2, 3, 4, 5)

_MANIFEST = "manifest.json"
_OWNER = "the shapes set"


def _coco_json(seed: int, subset: str, count: int, image_dir: str) -> dict:
    images, annotations = [], []
    for index in tqdm(range(count), desc=f"shapes {subset}", unit="img"):
        image, objects = render_image(seed, subset, index)
        file_name = f"{index:06d}.png"
        cv2.imwrite(os.path.join(image_dir, file_name), image)
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": image.shape[0], "width": image.shape[1]})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, **obj})
    return {
        "info": {"description": f"soft-teacher-d2 synthetic shapes, {subset}",
                 "generator_version": GENERATOR_VERSION, "seed": seed},
        "licenses": [],
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES)],
        "images": images,
        "annotations": annotations,
    }


def _manifest(seed: int, num_train: int, num_val: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "num_train": num_train, "num_val": num_val}


def _dataset_dir(root: str) -> str:
    return os.path.join(os.path.expanduser(root), "shapes")


def generate_shapes(root: str, seed: int = DEFAULT_SEED, num_train: int = NUM_TRAIN_IMAGES,
                    num_val: int = NUM_VAL_IMAGES) -> str:
    """Write the set to ``root/shapes`` (replacing what is there) and return that folder.

    Layout: ``{train,val,test}/*.png``, ``annotations/shapes_{train,val,test}.json`` (test has ``num_val``
    images) and a
    ``manifest.json`` (generator version, seed, sizes) written last, so that an interrupted
    generation is never taken for a complete one. Several processes may call this at
    once: each writes a private folder and the first to finish moves it into place.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}.")
    target = _dataset_dir(root)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".shapes-", dir=os.path.dirname(target))
    try:
        os.makedirs(os.path.join(staging, "annotations"))
        for subset, count in (("train", num_train), ("val", num_val), ("test", num_val)):
            os.makedirs(os.path.join(staging, subset))
            coco = _coco_json(seed, subset, count, os.path.join(staging, subset))
            with open(os.path.join(staging, "annotations", f"shapes_{subset}.json"), "w") as f:
                json.dump(coco, f, sort_keys=True)
        with open(os.path.join(staging, _MANIFEST), "w") as f:
            json.dump(_manifest(seed, num_train, num_val), f, sort_keys=True)
        if os.path.isdir(target) and not _is_current(target, seed, num_train, num_val):
            shutil.rmtree(target, ignore_errors=True)  # another process may be removing it too
        try:
            os.rename(staging, target)
        except OSError:
            if not _is_current(target, seed, num_train, num_val):  # not a concurrent generator's result
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_current(folder: str, seed: int, num_train: int, num_val: int) -> bool:
    try:
        with open(os.path.join(folder, _MANIFEST)) as f:
            return json.load(f) == _manifest(seed, num_train, num_val)
    except (OSError, ValueError):
        return False


def ensure_shapes(root: str, seed: int = DEFAULT_SEED, num_train: int = NUM_TRAIN_IMAGES,
                  num_val: int = NUM_VAL_IMAGES) -> str:
    """Return ``root/shapes``, generating it first unless its manifest matches these settings."""
    folder = _dataset_dir(root)
    if _is_current(folder, seed, num_train, num_val):
        return folder
    logger.info(f"Generating the synthetic shapes set ({num_train} train + {num_val} val + {num_val} test images) "
                f"in {folder}")
    return generate_shapes(root, seed, num_train, num_val)


def _load_subset(root: str, subset: str, seed: int, num_train: int, num_val: int) -> List[dict]:
    folder = ensure_shapes(root, seed, num_train, num_val)
    return load_coco_json(os.path.join(folder, "annotations", f"shapes_{subset}.json"),
                          os.path.join(folder, subset), f"shapes_{subset}")


def _load_split(root: str, percent: int, fold: int, unlabeled: bool, seed: int, num_train: int,
                num_val: int) -> List[dict]:
    dicts = _load_subset(root, "train", seed, num_train, num_val)
    chosen = np.zeros(len(dicts), dtype=bool)
    chosen[partial_split_indices(len(dicts), percent, fold)] = True
    return [d for d, labeled in zip(dicts, chosen) if labeled != unlabeled]


def register_shapes(root: Optional[str] = None, seed: int = DEFAULT_SEED, num_train: int = NUM_TRAIN_IMAGES,
                    num_val: int = NUM_VAL_IMAGES, percents: Sequence[int] = SPLIT_PERCENTS,
                    folds: Sequence[int] = SPLIT_FOLDS) -> Dict[str, str]:
    """Register ``shapes_train``, ``shapes_val``, ``shapes_test`` and the partial splits, stored under
    ``root/shapes``.

    ``root`` defaults to :func:`~.catalog.dataset_root`, read now.
    Loading any of them generates the set on first use. Calling again with another root,
    seed or size replaces the previous registration of these names. Returns
    ``{name: kind}`` with kind "labeled" or "unlabeled".
    """
    root = dataset_root() if root is None else root
    folder = _dataset_dir(root)
    settings = dict(seed=seed, num_train=num_train, num_val=num_val)
    source = (folder, seed, num_train, num_val)
    metadata = dict(thing_classes=list(SHAPE_CLASSES), evaluator_type="coco",
                    thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SHAPE_CLASSES))})
    names = {}
    for subset in SUBSETS:
        name = f"shapes_{subset}"
        register_dataset(name, lambda subset=subset: _load_subset(root, subset, **settings), _OWNER, source,
                         builtin=True, json_file=os.path.join(folder, "annotations", f"{name}.json"),
                         image_root=os.path.join(folder, subset), **metadata)
        names[name] = "labeled"
    for percent in percents:
        for fold in folds:
            for unlabeled in (False, True):
                name = f"shapes_train_{percent}pct_{fold}" + ("_unlabeled" if unlabeled else "")
                # No json_file: COCOEvaluator converts a split's own dicts instead of using all of train.
                register_dataset(name, lambda p=percent, s=fold, u=unlabeled: _load_split(root, p, s, u, **settings),
                                 _OWNER, source, builtin=True, image_root=os.path.join(folder, "train"), **metadata)
                names[name] = "unlabeled" if unlabeled else "labeled"
    return names
