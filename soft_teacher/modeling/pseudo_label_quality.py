"""Per-iteration statistics of the pseudo labels, written to Detectron2's EventStorage.

With several processes every scalar is over the whole iteration's unlabeled batch (all
ranks): each rank sums :func:`pseudo_label_counts`, the sums are added across ranks, and
:func:`stats_from_counts` turns them into the scalars below.

Names (all under ``pseudo/``):

- ``boxes_per_image_rpn`` / ``_cls`` / ``_reg``: mean number of pseudo boxes per image
  that reach the student's RPN, ROI classification and ROI regression losses (student
  view, after dropping boxes that left it);
- ``teacher_score_mean``: mean score of the candidate pseudo boxes (teacher view), 0 if none;
- ``precision`` / ``recall``: only when the unlabeled images carry hidden annotations,
  of the classification set against them, in the teacher view; written only when
  defined (some pseudo boxes for precision, some annotations for recall).

Matching for precision/recall is greedy and one-to-one, as in COCO evaluation: pseudo
boxes in decreasing score order each take the not yet matched annotation of the same
class with the highest IoU, if that IoU is >= 0.5.
"""
from typing import Dict, List, Optional

import torch

from detectron2.structures import Instances, pairwise_iou

MATCH_IOU = 0.5


def count_true_positives(pseudo_labels: Instances, annotations: Instances, iou_thresh: float = MATCH_IOU) -> int:
    """Number of pseudo boxes matched to an annotation (same class, IoU >= ``iou_thresh``, one-to-one).

    Args:
        pseudo_labels: ``gt_boxes``, ``gt_classes``, ``scores`` of one image.
        annotations: ``gt_boxes``, ``gt_classes`` of the same image, same frame.
    """
    iou = pairwise_iou(pseudo_labels.gt_boxes, annotations.gt_boxes)  # (P, G)
    same_class = pseudo_labels.gt_classes[:, None] == annotations.gt_classes[None, :]
    iou = torch.where(same_class, iou, torch.zeros_like(iou))
    unmatched = torch.ones(len(annotations), dtype=torch.bool, device=iou.device)
    true_positives = 0
    for row in iou[pseudo_labels.scores.argsort(descending=True)]:
        candidates = torch.where(unmatched, row, torch.full_like(row, -1.0))
        if len(candidates) and candidates.max() >= iou_thresh:
            unmatched[candidates.argmax()] = False
            true_positives += 1
    return true_positives


# What :func:`pseudo_label_counts` sums, in order; every entry adds up over images and processes.
COUNT_NAMES = (
    "images",
    "boxes_rpn",
    "boxes_cls",
    "boxes_reg",
    "candidates",
    "candidate_score_sum",
    "batches",
    "annotated_batches",
    "true_positives",
    "cls_boxes_teacher_view",
    "annotations",
)


def pseudo_label_counts(
    candidates: List[Instances],
    rpn_sets: List[Instances],
    cls_sets: List[Instances],
    reg_sets: List[Instances],
    cls_sets_teacher_view: Optional[List[Instances]] = None,
    annotations_teacher_view: Optional[List[Instances]] = None,
) -> torch.Tensor:
    """The sums behind the ``pseudo/*`` scalars of one batch: a float64 tensor of shape ``(len(COUNT_NAMES),)``.

    Sums, not ratios, so that several processes' batches combine exactly by adding their
    tensors (one ``all_reduce``) before :func:`stats_from_counts` divides.

    Args:
        candidates: per image, the candidate pseudo boxes with ``scores`` (teacher view).
        rpn_sets, cls_sets, reg_sets: per image, the pseudo boxes given to each loss (student view).
        cls_sets_teacher_view, annotations_teacher_view: per image, the classification set and
            the hidden annotations, both in the teacher view; give both or neither.
    """
    scores = torch.cat([c.scores for c in candidates])
    counts = {
        "images": len(candidates),
        "boxes_rpn": sum(len(x) for x in rpn_sets),
        "boxes_cls": sum(len(x) for x in cls_sets),
        "boxes_reg": sum(len(x) for x in reg_sets),
        "candidates": len(scores),
        "candidate_score_sum": scores.double().sum().item(),
        "batches": 1,
        "annotated_batches": 0,
        "true_positives": 0,
        "cls_boxes_teacher_view": 0,
        "annotations": 0,
    }
    if annotations_teacher_view is not None:
        counts["annotated_batches"] = 1
        counts["true_positives"] = sum(
            count_true_positives(p, a) for p, a in zip(cls_sets_teacher_view, annotations_teacher_view)
        )
        counts["cls_boxes_teacher_view"] = sum(len(p) for p in cls_sets_teacher_view)
        counts["annotations"] = sum(len(a) for a in annotations_teacher_view)
    return torch.tensor([float(counts[name]) for name in COUNT_NAMES], dtype=torch.float64, device=scores.device)


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
    if c["annotated_batches"] == c["batches"]:
        if c["cls_boxes_teacher_view"]:
            stats["pseudo/precision"] = c["true_positives"] / c["cls_boxes_teacher_view"]
        if c["annotations"]:
            stats["pseudo/recall"] = c["true_positives"] / c["annotations"]
    return stats
