"""Per-iteration statistics of the pseudo labels, written to Detectron2's EventStorage.

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


def pseudo_label_stats(
    candidates: List[Instances],
    rpn_sets: List[Instances],
    cls_sets: List[Instances],
    reg_sets: List[Instances],
    cls_sets_teacher_view: Optional[List[Instances]] = None,
    annotations_teacher_view: Optional[List[Instances]] = None,
) -> Dict[str, float]:
    """The ``pseudo/*`` scalars of one batch (see the module docstring).

    Args:
        candidates: per image, the candidate pseudo boxes with ``scores`` (teacher view).
        rpn_sets, cls_sets, reg_sets: per image, the pseudo boxes given to each loss (student view).
        cls_sets_teacher_view, annotations_teacher_view: per image, the classification set and
            the hidden annotations, both in the teacher view; give both or neither.
    """
    num_images = len(candidates)
    scores = torch.cat([c.scores for c in candidates])
    stats = {
        "pseudo/boxes_per_image_rpn": sum(len(x) for x in rpn_sets) / num_images,
        "pseudo/boxes_per_image_cls": sum(len(x) for x in cls_sets) / num_images,
        "pseudo/boxes_per_image_reg": sum(len(x) for x in reg_sets) / num_images,
        "pseudo/teacher_score_mean": scores.float().mean().item() if len(scores) else 0.0,
    }
    if annotations_teacher_view is not None:
        true_positives = sum(
            count_true_positives(p, a) for p, a in zip(cls_sets_teacher_view, annotations_teacher_view)
        )
        num_pseudo = sum(len(p) for p in cls_sets_teacher_view)
        num_annotations = sum(len(a) for a in annotations_teacher_view)
        if num_pseudo:
            stats["pseudo/precision"] = true_positives / num_pseudo
        if num_annotations:
            stats["pseudo/recall"] = true_positives / num_annotations
    return stats
