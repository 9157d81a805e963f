"""Per-iteration statistics of the pseudo labels, written to Detectron2's EventStorage.

With several processes every scalar is over the whole iteration's unlabeled batch (all
ranks): each rank sums :func:`pseudo_label_counts`, the sums are added across ranks, and
:func:`stats_from_counts` turns them into the scalars below.

Names (all under ``pseudo/``):

- ``boxes_per_image_rpn`` / ``_cls`` / ``_reg``: mean number of pseudo boxes per image
  that reach the student's RPN, ROI classification and ROI regression losses (student
  view, after dropping boxes that left it);
- ``teacher_score_mean``: mean score of the candidate pseudo boxes (teacher view), 0 if none;
- ``uncertainty_p10`` / ``_p50`` / ``_p90``: percentiles of the candidates' box-jitter
  uncertainty (read off a histogram of :data:`UNCERTAINTY_BIN` wide bins up to 0.3, an untrained
  regressor's 0.06 times five), when there are candidates: what ``SOFT_TEACHER.REG_UNCERTAINTY_THRESH``
  lets through;
- ``precision`` / ``recall``: only when the unlabeled images carry hidden annotations,
  of the classification set against them, in the teacher view; and ``precision_at_T`` /
  ``recall_at_T`` of the candidates with score >= T for each T of :data:`SCORE_GRID` not below
  ``SOFT_TEACHER.INITIAL_SCORE_THRESH`` (the candidates' own threshold), what another threshold
  would give. Each is written only when defined (some pseudo boxes for
  precision, some annotations for recall).

Matching for precision/recall is greedy and one-to-one, as in COCO evaluation: pseudo
boxes in decreasing score order each take the not yet matched annotation of the same
class with the highest IoU, if that IoU is >= 0.5. Greedy matching in score order makes
the matches of the boxes above any threshold a prefix of those of all candidates, so one
pass serves every threshold.

Offline, :func:`measure_pseudo_labels` gives the same precision and recall (and how well
the jitter uncertainty singles out well-localised boxes) of a checkpoint over a sample of
unlabeled images; ``tools/measure_pseudo_labels.py`` is its command line.
"""
import math
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from detectron2.structures import Instances, pairwise_iou

from .pseudo_labels import teacher_pseudo_labels
from .view_geometry import instances_to_view

MATCH_IOU = 0.5
SCORE_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)
UNCERTAINTY_BIN = 0.001
UNCERTAINTY_BINS = 300  # the last bin also holds every uncertainty above 0.3: percentiles stop there
PERCENTILES = (10, 50, 90)


def same_class_iou(pseudo_labels: Instances, annotations: Instances) -> torch.Tensor:
    """``(P, G)`` IoU of each pseudo box with each annotation, 0 where their classes differ."""
    iou = pairwise_iou(pseudo_labels.gt_boxes, annotations.gt_boxes)
    same_class = pseudo_labels.gt_classes[:, None] == annotations.gt_classes[None, :]
    return torch.where(same_class, iou, torch.zeros_like(iou))


def true_positive_mask(pseudo_labels: Instances, annotations: Instances, iou_thresh: float = MATCH_IOU) -> torch.Tensor:
    """``(P,)`` bool: which pseudo boxes match an annotation (same class, IoU >= ``iou_thresh``, one-to-one).

    Args:
        pseudo_labels: ``gt_boxes``, ``gt_classes``, ``scores`` of one image.
        annotations: ``gt_boxes``, ``gt_classes`` of the same image, same frame.
    """
    iou = same_class_iou(pseudo_labels, annotations)
    unmatched = torch.ones(len(annotations), dtype=torch.bool, device=iou.device)
    matched = torch.zeros(len(pseudo_labels), dtype=torch.bool, device=iou.device)
    for index in pseudo_labels.scores.argsort(descending=True).tolist():
        candidates = torch.where(unmatched, iou[index], torch.full_like(iou[index], -1.0))
        if len(candidates) and candidates.max() >= iou_thresh:
            unmatched[candidates.argmax()] = False
            matched[index] = True
    return matched


# What :func:`pseudo_label_counts` sums, in order; every entry adds up over images and processes.
COUNT_NAMES = (
    ("images", "boxes_rpn", "boxes_cls", "boxes_reg", "candidates", "candidate_score_sum", "batches")
    + ("annotated_batches", "annotations", "true_positives", "cls_boxes_teacher_view")
    + tuple(f"{kind}_at_{t}" for t in SCORE_GRID for kind in ("true_positives", "boxes"))
    + tuple(f"uncertainty_bin_{i}" for i in range(UNCERTAINTY_BINS))
)


def pseudo_label_counts(
    candidates: List[Instances],
    rpn_sets: List[Instances],
    cls_sets: List[Instances],
    reg_sets: List[Instances],
    cls_thresh: float,
    annotations_teacher_view: Optional[List[Instances]] = None,
    initial_thresh: float = 0.0,
) -> torch.Tensor:
    """The sums behind the ``pseudo/*`` scalars of one batch: a float64 tensor of shape ``(len(COUNT_NAMES),)``.

    Sums, not ratios, so that several processes' batches combine exactly by adding their
    tensors (one ``all_reduce``) before :func:`stats_from_counts` divides.

    Args:
        candidates: per image, the candidate pseudo boxes with ``scores`` and ``uncertainty`` (teacher view).
        rpn_sets, cls_sets, reg_sets: per image, the pseudo boxes given to each loss (student view).
        cls_thresh: the classification score threshold (``SOFT_TEACHER.CLS_PSEUDO_THRESH``).
        annotations_teacher_view: per image, the hidden annotations in the teacher view, if known.
        initial_thresh: the candidates' score threshold (``SOFT_TEACHER.INITIAL_SCORE_THRESH``): grid
            thresholds below it are left out, as the candidates do not tell what they would give.
    """
    scores = torch.cat([c.scores for c in candidates])
    uncertainty = torch.cat([c.uncertainty for c in candidates]).double()
    bins = (uncertainty / UNCERTAINTY_BIN).floor().clamp(0, UNCERTAINTY_BINS - 1).long()
    counts = dict.fromkeys(COUNT_NAMES, 0.0)
    counts.update(
        images=len(candidates),
        boxes_rpn=sum(len(x) for x in rpn_sets),
        boxes_cls=sum(len(x) for x in cls_sets),
        boxes_reg=sum(len(x) for x in reg_sets),
        candidates=len(scores),
        candidate_score_sum=scores.double().sum().item(),
        batches=1,
    )
    for index, count in enumerate(torch.bincount(bins, minlength=UNCERTAINTY_BINS).tolist()):
        counts[f"uncertainty_bin_{index}"] = count
    if annotations_teacher_view is not None:
        matched = torch.cat([true_positive_mask(c, a) for c, a in zip(candidates, annotations_teacher_view)])
        counts["annotated_batches"] = 1
        counts["annotations"] = sum(len(a) for a in annotations_teacher_view)
        for name, thresh in [("", cls_thresh)] + [(f"_at_{t}", t) for t in SCORE_GRID]:
            above = scores >= thresh
            counts[f"true_positives{name}"] = (matched & above).sum().item()
            counts["cls_boxes_teacher_view" if not name else f"boxes{name}"] = above.sum().item()
        for t in SCORE_GRID:
            if t < initial_thresh:  # NaN survives the sums across processes and marks the figure unknown
                counts[f"true_positives_at_{t}"] = counts[f"boxes_at_{t}"] = math.nan
    return torch.tensor([float(counts[name]) for name in COUNT_NAMES], dtype=torch.float64, device=scores.device)


def _percentile(histogram: List[float], percent: float) -> float:
    """The ``percent``-th percentile of values binned in ``histogram``, interpolated within its bin."""
    target = percent / 100 * sum(histogram)
    below = 0.0
    for index, count in enumerate(histogram):
        if count and below + count >= target:
            return (index + (target - below) / count) * UNCERTAINTY_BIN
        below += count
    return len(histogram) * UNCERTAINTY_BIN


def stats_from_counts(counts: torch.Tensor) -> Dict[str, float]:
    """The ``pseudo/*`` scalars (see the module docstring) of summed :func:`pseudo_label_counts`.

    Precision and recall are given only when every summed batch had hidden annotations, and
    each only when defined (some pseudo boxes for precision, some annotations for recall).
    """
    c = dict(zip(COUNT_NAMES, counts.tolist()))
    stats = {
        "pseudo/boxes_per_image_rpn": c["boxes_rpn"] / c["images"],
        "pseudo/boxes_per_image_cls": c["boxes_cls"] / c["images"],
        "pseudo/boxes_per_image_reg": c["boxes_reg"] / c["images"],
        "pseudo/teacher_score_mean": c["candidate_score_sum"] / c["candidates"] if c["candidates"] else 0.0,
    }
    if c["candidates"]:
        histogram = [c[f"uncertainty_bin_{i}"] for i in range(UNCERTAINTY_BINS)]
        stats.update({f"pseudo/uncertainty_p{p}": _percentile(histogram, p) for p in PERCENTILES})
    if c["annotated_batches"] == c["batches"]:
        for name, boxes in [("", "cls_boxes_teacher_view")] + [(f"_at_{t}", f"boxes_at_{t}") for t in SCORE_GRID]:
            if math.isnan(c[boxes]):
                continue
            if c[boxes]:
                stats[f"pseudo/precision{name}"] = c[f"true_positives{name}"] / c[boxes]
            if c["annotations"]:
                stats[f"pseudo/recall{name}"] = c[f"true_positives{name}"] / c["annotations"]
    return stats


# ---------------------------------------------------------------------------------------------
# Offline measurement over a sample of images (tools/measure_pseudo_labels.py).

MEASURE_SCORE_GRID = SCORE_GRID + (0.95,)
MEASURE_PERCENTILES = (10, 25, 50, 75, 90)
UNCERTAINTY_GRID = (0.02, 0.03, 0.04, 0.05, None)  # None: every candidate
WELL_LOCALISED_IOU = 0.75


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
    candidates: Sequence[Instances], annotations: Sequence[Instances], initial_score_thresh: float = 0.0
) -> Dict:
    """Quality figures of candidate pseudo boxes against annotations, over several images.

    Args:
        candidates: per image, ``gt_boxes``, ``gt_classes``, ``scores``, ``uncertainty`` (all with
            score >= ``initial_score_thresh``).
        annotations: per image, ``gt_boxes``, ``gt_classes`` in the same frame.
        initial_score_thresh: thresholds of :data:`MEASURE_SCORE_GRID` below it are left out.

    Returns:
        A JSON-ready dict: ``images``, ``annotations``, ``candidates``, ``initial_score_thresh``;
        ``score_thresholds``: per threshold ``T``, the candidates with score >= ``T``: ``boxes``,
        ``boxes_per_image``, ``true_positives``, ``precision``, ``recall`` (greedy one-to-one
        matching, :func:`true_positive_mask`); ``uncertainty_percentiles``: ``{"p10": ...}`` over
        every candidate; ``uncertainty_thresholds``: per threshold ``U`` of :data:`UNCERTAINTY_GRID`
        (``None``: all), the candidates with uncertainty < ``U``: ``candidates``, ``mean_iou`` (with
        the best annotation of the same class, matched or not) and ``well_localised_share`` (of
        those with that IoU >= :data:`WELL_LOCALISED_IOU`). A ratio without a denominator is ``None``.
    """
    cpu = [c.to("cpu") for c in candidates]
    anns = [a.to("cpu") for a in annotations]
    num_images, num_annotations = len(cpu), sum(len(a) for a in anns)
    empty = torch.zeros(0)
    scores = torch.cat([c.scores.float() for c in cpu]) if cpu else empty
    uncertainty = torch.cat([c.uncertainty.float() for c in cpu]) if cpu else empty
    matched = torch.cat([true_positive_mask(c, a) for c, a in zip(cpu, anns)]) if cpu else empty.bool()
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
        })
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
) -> Dict:
    """:func:`pseudo_label_figures` of a detector's pseudo labels on annotated images, as training makes them.

    Each image goes through ``mapper`` (the training one, ``UnlabeledDatasetMapper(cfg, True)``:
    its teacher view and ``hidden_instances``), is pseudo-labelled one at a time with
    :func:`teacher_pseudo_labels` and its annotations are moved into the teacher view.

    Args:
        model: a plain detector in eval mode, or a teacher-student model (its ``teacher`` labels).
        mapper: dataset dict -> ``{"teacher": {"image", "transform_matrix"}, "hidden_instances"}``,
            or None for an unreadable image (skipped, counted in ``skipped_images``).
        dataset_dicts: the images; each must have ``annotations``.
        score_thresh, jitter_times, jitter_scale: ``SOFT_TEACHER.INITIAL_SCORE_THRESH``,
            ``JITTER_TIMES`` and ``JITTER_SCALE``.

    Raises:
        ValueError: a dict has no ``annotations`` (before any image is pseudo-labelled).
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
    figures = pseudo_label_figures(candidates, annotations, score_thresh)
    figures["skipped_images"] = skipped
    return figures
