"""Measuring pseudo labels offline: the image sample and the printed table of ``tools/measure_pseudo_labels.py``.

The measurement itself is :func:`soft_teacher.modeling.pseudo_label_quality.measure_pseudo_labels`.
"""
from typing import List

import numpy as np

from detectron2.data import DatasetCatalog

from soft_teacher.modeling.pseudo_label_quality import require_hidden_annotations

__all__ = ["format_figures", "sample_dataset_dicts"]


def sample_dataset_dicts(name: str, num: int, seed: int) -> List[dict]:
    """``num`` dicts (all, if fewer) of the registered dataset ``name``, drawn without replacement.

    Raises:
        FileNotFoundError: ``name`` is not registered.
        ValueError: its dicts have no annotations to measure against.
    """
    if name not in DatasetCatalog.list():
        raise FileNotFoundError(
            f"--dataset {name!r} is not a registered dataset: pass a name such as shapes_train_5pct_1_unlabeled, "
            "or declare your own with DATASETS.CUSTOM_COCO."
        )
    dicts = DatasetCatalog.get(name)
    indices = np.random.RandomState(seed).choice(len(dicts), min(num, len(dicts)), replace=False)
    sample = [dicts[i] for i in indices]
    require_hidden_annotations(sample, f"Dataset {name!r}")
    return sample


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_figures(figures: dict) -> str:
    """The figures of ``measure_pseudo_labels`` as a readable table."""
    lines = [
        f"{figures['images']} images ({figures['skipped_images']} unreadable skipped), "
        f"{figures['annotations']} annotations, {figures['candidates']} candidate pseudo boxes "
        f"(score >= {figures['initial_score_thresh']:g})",
        "",
        f"{'score >=':>9} {'boxes/image':>12} {'precision':>10} {'recall':>8}",
    ]
    for row in figures["score_thresholds"]:
        lines.append(f"{row['threshold']:>9g} {_fmt(row['boxes_per_image'], 2):>12} "
                     f"{_fmt(row['precision']):>10} {_fmt(row['recall']):>8}")
    percentiles = figures["uncertainty_percentiles"]
    lines += ["", "uncertainty percentiles: " + "  ".join(f"{k} {_fmt(v, 4)}" for k, v in percentiles.items()), ""]
    lines.append(f"{'uncertainty <':>13} {'candidates':>10} {'mean IoU':>9} {'IoU >= 0.75':>12}")
    for row in figures["uncertainty_thresholds"]:
        threshold = "all" if row["threshold"] is None else f"{row['threshold']:g}"
        lines.append(f"{threshold:>13} {row['candidates']:>10} {_fmt(row['mean_iou']):>9} "
                     f"{_fmt(row['well_localised_share']):>12}")
    return "\n".join(lines)
