"""Offline measurement of a checkpoint's pseudo labels over a sample of annotated images
(``tools/measure_pseudo_labels.py``); matching is :mod:`soft_teacher.diagnostics`'."""
from collections import Counter
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from detectron2.structures import Instances

from ..diagnostics import FALSE_POSITIVE_CAUSES, SCORE_GRID, match_pseudo_labels, same_class_iou
from .pseudo_labels import teacher_pseudo_labels
from .view_geometry import instances_to_view

# ---------------------------------------------------------------------------------------------
# Offline measurement over a sample of images (tools/measure_pseudo_labels.py).

MEASURE_SCORE_GRID = SCORE_GRID + (0.95,)
MEASURE_PERCENTILES = (10, 25, 50, 75, 90)
UNCERTAINTY_GRID = (0.02, 0.03, 0.04, 0.05, None)  # None: every candidate
WELL_LOCALISED_IOU = 0.75
# Why a pseudo box is false, checked in this order (see :func:`false_positive_causes`).


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return numerator / denominator if denominator else None


def require_hidden_annotations(dataset_dicts: Sequence[dict], dataset_name: str = "The dataset") -> None:
    """Raise ``ValueError`` unless every dict carries ``annotations`` to measure pseudo labels against."""
    missing = sum("annotations" not in d for d in dataset_dicts)
    if missing:
        raise ValueError(
            f"{dataset_name} has no hidden annotations to measure against ({missing} of {len(dataset_dicts)} "
            "images have no 'annotations'): use the unlabeled split of an annotated set, e.g. "
            "shapes_train_5pct_1_unlabeled or coco_2017_train_10pct_1_unlabeled."
        )


def pseudo_label_figures(
    candidates: Sequence[Instances],
    annotations: Sequence[Instances],
    initial_score_thresh: float = 0.0,
    cls_thresh: Optional[float] = None,
) -> Dict:
    """JSON-ready quality figures of candidate pseudo boxes against annotations in the same frame.

    ``score_thresholds`` gives, per threshold of :data:`MEASURE_SCORE_GRID` not below
    ``initial_score_thresh``, the candidates' precision and recall, and ``false_positives``, how many
    of the false ones have each cause of :data:`FALSE_POSITIVE_CAUSES`. ``confusions`` lists the
    ``wrong_class`` boxes scoring >= ``cls_thresh`` (default ``initial_score_thresh``) by pair of
    annotated and pseudo class, most frequent first. ``uncertainty_thresholds`` gives,
    per threshold ``U`` of :data:`UNCERTAINTY_GRID`, the candidates with uncertainty < ``U``, their
    mean IoU with the best same-class annotation (matched or not) and the share of them at or above
    :data:`WELL_LOCALISED_IOU`: whether low uncertainty singles out well-localised boxes. A ratio
    without a denominator is ``None``.
    """
    cpu = [c.to("cpu") for c in candidates]
    anns = [a.to("cpu") for a in annotations]
    num_images, num_annotations = len(cpu), sum(len(a) for a in anns)
    empty = torch.zeros(0)
    scores = torch.cat([c.scores.float() for c in cpu]) if cpu else empty
    uncertainty = torch.cat([c.uncertainty.float() for c in cpu]) if cpu else empty
    matched, causes, annotated_classes = match_pseudo_labels(cpu, anns)
    pseudo_classes = torch.cat([c.gt_classes for c in cpu]) if cpu else empty.long()
    best_iou = torch.cat([
        same_class_iou(c, a).max(dim=1).values if len(a) else torch.zeros(len(c)) for c, a in zip(cpu, anns)
    ]) if cpu else empty

    score_rows = []
    for t in MEASURE_SCORE_GRID:
        if t < initial_score_thresh:
            continue
        above = scores >= t
        boxes, true_positives = int(above.sum()), int((matched & above).sum())
        score_rows.append({
            "threshold": t,
            "boxes": boxes,
            "boxes_per_image": _ratio(boxes, num_images),
            "true_positives": true_positives,
            "precision": _ratio(true_positives, boxes),
            "recall": _ratio(true_positives, num_annotations),
            "false_positives": {cause: int((above & (causes == index)).sum())
                                for index, cause in enumerate(FALSE_POSITIVE_CAUSES)},
        })
    confusion_thresh = initial_score_thresh if cls_thresh is None else cls_thresh
    confused = (scores >= confusion_thresh) & (causes == FALSE_POSITIVE_CAUSES.index("wrong_class"))
    pairs = Counter(zip(annotated_classes[confused].tolist(), pseudo_classes[confused].tolist()))
    confusions = [{"annotated_class": a, "pseudo_class": p, "boxes": n} for (a, p), n in pairs.most_common()]
    uncertainty_rows = []
    for u in UNCERTAINTY_GRID:
        below = uncertainty < u if u is not None else torch.ones_like(uncertainty, dtype=torch.bool)
        count = int(below.sum())
        uncertainty_rows.append({
            "threshold": u,
            "candidates": count,
            "mean_iou": float(best_iou[below].mean()) if count else None,
            "well_localised_share": _ratio(int((best_iou[below] >= WELL_LOCALISED_IOU).sum()), count),
        })
    values = uncertainty.double().numpy()
    percentiles = {f"p{p}": float(np.percentile(values, p)) if len(values) else None for p in MEASURE_PERCENTILES}
    return {
        "images": num_images,
        "annotations": num_annotations,
        "candidates": len(scores),
        "initial_score_thresh": initial_score_thresh,
        "score_thresholds": score_rows,
        "confusion_thresh": confusion_thresh,
        "confusions": confusions,
        "uncertainty_percentiles": percentiles,
        "uncertainty_thresholds": uncertainty_rows,
    }


@torch.no_grad()
def measure_pseudo_labels(
    model: torch.nn.Module,
    mapper: Callable[[dict], Optional[dict]],
    dataset_dicts: Sequence[dict],
    score_thresh: float,
    jitter_times: int,
    jitter_scale: float,
    cls_thresh: Optional[float] = None,
) -> Dict:
    """:func:`pseudo_label_figures` of a detector's pseudo labels on annotated images, as training makes them.

    ``mapper`` is the training one (``UnlabeledDatasetMapper(cfg, True)``), so each image gets its
    teacher view, pseudo-labelled alone, and its ``hidden_instances`` moved into that view; an image it
    cannot read counts in ``skipped_images``. ``model`` is a plain detector in eval mode or a
    teacher-student model, whose teacher labels.
    """
    require_hidden_annotations(dataset_dicts)
    teacher = getattr(model, "teacher", model)
    candidates, annotations, skipped = [], [], 0
    for dataset_dict in dataset_dicts:
        views = mapper(dataset_dict)
        if views is None:
            skipped += 1
            continue
        teacher_view = views["teacher"]
        labels = teacher_pseudo_labels(teacher, [teacher_view], score_thresh, jitter_times, jitter_scale)
        labels = labels.pseudo_labels[0].to("cpu")
        matrix = torch.as_tensor(teacher_view["transform_matrix"]).cpu()
        annotations.append(instances_to_view(views["hidden_instances"].to("cpu"), matrix, labels.image_size))
        candidates.append(labels)
    figures = pseudo_label_figures(candidates, annotations, score_thresh, cls_thresh)
    figures["skipped_images"] = skipped
    return figures
