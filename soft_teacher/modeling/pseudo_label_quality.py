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
"""
import math
from typing import Dict, List, Optional

import torch

from detectron2.structures import Instances, pairwise_iou

MATCH_IOU = 0.5
SCORE_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)
UNCERTAINTY_BIN = 0.001
UNCERTAINTY_BINS = 300  # the last bin also holds every uncertainty above 0.3: percentiles stop there
PERCENTILES = (10, 50, 90)


def true_positive_mask(pseudo_labels: Instances, annotations: Instances, iou_thresh: float = MATCH_IOU) -> torch.Tensor:
    """``(P,)`` bool: which pseudo boxes match an annotation (same class, IoU >= ``iou_thresh``, one-to-one).

    Args:
        pseudo_labels: ``gt_boxes``, ``gt_classes``, ``scores`` of one image.
        annotations: ``gt_boxes``, ``gt_classes`` of the same image, same frame.
    """
    iou = pairwise_iou(pseudo_labels.gt_boxes, annotations.gt_boxes)  # (P, G)
    same_class = pseudo_labels.gt_classes[:, None] == annotations.gt_classes[None, :]
    iou = torch.where(same_class, iou, torch.zeros_like(iou))
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
