"""Checks of dataset content that fail early with a message saying what is wrong and where."""
import logging
import os
from typing import Dict, List, Optional, Sequence, Set

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .catalog import dataset_root

__all__ = ["check_boxes", "check_categories", "check_image_files"]

logger = logging.getLogger(__name__)


def check_boxes(dataset_dicts: List[dict], source: str) -> None:
    """Raise ``ValueError`` naming the image and the box if any annotation box has a negative width or height.

    Args:
        dataset_dicts: Detectron2 dataset dicts whose "annotations" hold "bbox" in "bbox_mode".
        source: where the dicts come from (dataset name and file), quoted in the message.
    """
    for record in dataset_dicts:
        for index, anno in enumerate(record.get("annotations", ())):
            x0, y0, x1, y1 = BoxMode.convert(list(anno["bbox"]), anno["bbox_mode"], BoxMode.XYXY_ABS)
            if x1 < x0 or y1 < y0:
                raise ValueError(
                    f"{source}: annotation #{index} of image '{record['file_name']}' (image id "
                    f"{record.get('image_id')}) has a box of negative size: bbox={list(anno['bbox'])} in "
                    f"{BoxMode(anno['bbox_mode']).name}, i.e. width {x1 - x0:g} and height {y1 - y0:g}. "
                    "Boxes need width >= 0 and height >= 0 (COCO's bbox is [x, y, width, height]); fix or drop it."
                )


def _file_names(folder: str) -> Optional[Set[str]]:
    """The names of the files in ``folder`` (none if it does not exist), or None if it cannot be listed."""
    try:
        with os.scandir(folder or os.curdir) as entries:
            return {entry.name for entry in entries if entry.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except OSError:  # e.g. a folder one may open files in but not list
        return None


def _missing_files(paths: Sequence[str]) -> List[str]:
    """The local paths among ``paths`` that are not files, in order.

    Each folder is listed once, instead of one stat per file, which is slow on network file
    systems. URLs (``scheme://...``) are not checked: the mappers read them through PathManager.
    """
    listed: Dict[str, Optional[Set[str]]] = {}
    missing = []
    for path in paths:
        if "://" in path:
            continue
        folder, name = os.path.split(path)
        if folder not in listed:
            listed[folder] = _file_names(folder)
        names = listed[folder]
        exists = os.path.isfile(path) if names is None else name in names
        if not exists:
            missing.append(path)
    return missing


def check_image_files(dataset_dicts: List[dict], dataset_names: Sequence[str], max_listed: int = 5) -> None:
    """Raise ``FileNotFoundError`` if any local "file_name" of the dicts does not exist (URLs are not checked).

    Every path is checked once, when training starts, so that a wrong dataset root or image
    root fails at once with how many images are missing and the first ``max_listed`` of them,
    not when the loader first reads one, possibly hours later.

    Args:
        dataset_dicts: the dicts of the datasets ``dataset_names``.
        dataset_names: quoted in the message with the image roots they were registered with.
    """
    missing = _missing_files([d["file_name"] for d in dataset_dicts])
    if not missing:
        return
    listed = "".join(f"\n    {path}" for path in missing[:max_listed])
    if len(missing) > max_listed:
        listed += f"\n    ... and {len(missing) - max_listed} more"
    roots = ", ".join(f"'{name}': {MetadataCatalog.get(name).get('image_root', 'unknown')}" for name in dataset_names)
    raise FileNotFoundError(
        f"{len(missing)} of the {len(dataset_dicts)} images of {', '.join(dataset_names)} do not exist:{listed}\n"
        f"Image roots: {roots}. Check $DETECTRON2_DATASETS (now '{dataset_root()}') for the builtin sets; for a "
        "custom set, its image_root in DATASETS.CUSTOM_COCO and its json's file_name fields (relative to that root)."
    )


def _describe(name: str) -> str:
    json_file = MetadataCatalog.get(name).get("json_file")
    return f"'{name}'" + (f" ({json_file})" if json_file else "")


def _thing_classes(name: str, load_if_unknown: bool) -> Optional[List[str]]:
    """The dataset's category names; a lazily registered COCO-format set must be loaded to know them."""
    meta = MetadataCatalog.get(name)
    if "thing_classes" not in meta.as_dict() and load_if_unknown and name in DatasetCatalog.list():
        DatasetCatalog.get(name)
    return meta.get("thing_classes")


def check_categories(labeled: Sequence[str], unlabeled: Sequence[str], test: Sequence[str], num_classes: int) -> None:
    """Raise ``ValueError`` if datasets disagree on their categories or with the model's class count.

    Args:
        labeled: names of the labeled training sets (already loaded, so their metadata is set).
        unlabeled: names of the unlabeled training sets (already loaded); plain image folders,
            which have no categories, are skipped.
        test: names of the test sets; a COCO-format set whose json was not read yet is
            loaded to learn its categories.
        num_classes: ``MODEL.ROI_HEADS.NUM_CLASSES``.
    """
    reference = labeled[0]
    classes = MetadataCatalog.get(reference).get("thing_classes")
    if classes is None:
        logger.warning("Dataset '%s' declares no categories (thing_classes); category checks skipped.", reference)
        return
    if len(classes) != num_classes:
        raise ValueError(
            f"Training set {_describe(reference)} has {len(classes)} categories {list(classes)} but "
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}: set MODEL.ROI_HEADS.NUM_CLASSES {len(classes)}."
        )
    compared = [("DATASETS.TRAIN", name, False) for name in labeled[1:]]
    compared += [("DATASETS.TRAIN_UNLABELED", name, False) for name in unlabeled]
    compared += [("DATASETS.TEST", name, True) for name in test]
    for role, name, load_if_unknown in compared:
        other = _thing_classes(name, load_if_unknown)
        if other is None or list(other) == list(classes):
            continue
        only_ref = [c for c in classes if c not in other]
        only_other = [c for c in other if c not in classes]
        detail = (f"only in '{reference}': {only_ref}; only in '{name}': {only_other}"
                  if only_ref or only_other else "the same names in another order")
        raise ValueError(
            f"{role} set {_describe(name)} has categories {list(other)}, but training set "
            f"{_describe(reference)} has {list(classes)} ({detail}). All training, unlabeled and test sets "
            "must have the same categories in the same order (COCO jsons: the same names for the same ids)."
        )
