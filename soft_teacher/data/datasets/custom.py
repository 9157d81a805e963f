"""Custom data without writing Python: COCO-format labeled sets and plain folders of unlabeled images.

Declare them in the config (or on the command line, as yacs literals):

.. code-block:: none

    DATASETS.CUSTOM_COCO "(('my_train', '/data/train.json', '/data/images'),
                           ('my_val', '/data/val.json', '/data/images'))"
    DATASETS.CUSTOM_UNLABELED_FOLDERS "(('my_unlabeled', '/data/unlabeled'),)"
    DATASETS.TRAIN "('my_train',)" DATASETS.TRAIN_UNLABELED "('my_unlabeled',)" DATASETS.TEST "('my_val',)"

:func:`register_custom_datasets` registers them; ``soft_teacher.engine.load_config`` calls it,
so every entry point has them, and so do the training loaders, for configs built in Python.
Registration is lazy: files are read, and checked, when a set is first loaded.
"""
import json
import logging
import os
from typing import Dict, List, Tuple

from detectron2.data.datasets import load_coco_json

from .catalog import register_dataset
from .validation import check_boxes

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_image_files",
    "load_image_folder",
    "load_checked_coco_json",
    "register_image_folder",
    "register_custom_coco",
    "register_custom_datasets",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# One owner for both lists, so that a name may move from one to the other.
_OWNER = "DATASETS.CUSTOM_COCO / CUSTOM_UNLABELED_FOLDERS"


def list_image_files(folder: str) -> List[str]:
    """Paths of the images under ``folder`` (subfolders included), sorted; matched by extension, any case."""
    files = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS))
    return files


def load_image_folder(folder: str, dataset_name: str) -> List[dict]:
    """Dataset dicts ``{"file_name", "image_id"}`` of an unlabeled image folder; image ids are paths relative to it.

    Heights and widths are not read here (that would open every file); the unlabeled
    mapper takes them from the decoded image.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Unlabeled dataset '{dataset_name}': image folder '{folder}' does not exist.")
    files = list_image_files(folder)
    if not files:
        raise ValueError(
            f"Unlabeled dataset '{dataset_name}': folder '{folder}' holds no images "
            f"(searched its subfolders too for {', '.join(IMAGE_EXTENSIONS)})."
        )
    logger.info("Found %d images in %s for unlabeled dataset '%s'.", len(files), folder, dataset_name)
    return [{"file_name": f, "image_id": os.path.relpath(f, folder)} for f in files]


def load_checked_coco_json(json_file: str, image_root: str, dataset_name: str) -> List[dict]:
    """Detectron2's ``load_coco_json``, after checking the paths, then checking every box's size."""
    where = f"Dataset '{dataset_name}'"
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{where}: COCO json file '{json_file}' does not exist.")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"{where}: image folder '{image_root}' (of {json_file}) does not exist.")
    try:
        dicts = load_coco_json(json_file, image_root, dataset_name)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: '{json_file}' is not a valid COCO instances json ({type(e).__name__}: {e}).") from e
    check_boxes(dicts, f"{where} ({json_file})")
    return dicts


def register_custom_coco(name: str, json_file: str, image_root: str) -> None:
    """Register a labeled COCO-format set (evaluated with ``COCOEvaluator``; categories come from the json)."""
    register_dataset(name, lambda: load_checked_coco_json(json_file, image_root, name), _OWNER,
                     ("coco", json_file, image_root), json_file=json_file, image_root=image_root, evaluator_type="coco")


def register_image_folder(name: str, folder: str, metadata: Dict = None) -> None:
    """Register a folder of unlabeled images (no json needed) under ``name``."""
    register_dataset(name, lambda: load_image_folder(folder, name), _OWNER, ("folder", folder),
                     image_root=folder, **(metadata or {}))


def _entries(cfg_value, key: str, fields: Tuple[str, ...]) -> List[Tuple[str, ...]]:
    entries = []
    for entry in cfg_value:
        if isinstance(entry, str) or len(entry) != len(fields) or not all(isinstance(v, str) for v in entry):
            raise ValueError(f"{key} entries must be ({', '.join(fields)}) tuples of strings, got {entry!r}")
        entries.append(tuple(entry))
    return entries


def register_custom_datasets(cfg) -> List[str]:
    """Register the sets of ``DATASETS.CUSTOM_COCO`` and ``DATASETS.CUSTOM_UNLABELED_FOLDERS``; return their names.

    Idempotent: calling it again with the same config does nothing; a name declared with other
    files replaces the earlier declaration.
    """
    names = []
    for name, json_file, image_root in _entries(cfg.DATASETS.CUSTOM_COCO, "DATASETS.CUSTOM_COCO",
                                                ("name", "json_file", "image_root")):
        register_custom_coco(name, json_file, image_root)
        names.append(name)
    for name, folder in _entries(cfg.DATASETS.CUSTOM_UNLABELED_FOLDERS, "DATASETS.CUSTOM_UNLABELED_FOLDERS",
                                 ("name", "folder")):
        register_image_folder(name, folder)
        names.append(name)
    return names
