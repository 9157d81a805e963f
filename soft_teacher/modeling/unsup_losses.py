"""The student's ROI losses on pseudo labels (student view frame).

The unsupervised RPN loss needs nothing new: it is the student RPN's own loss with the
high-score pseudo boxes as ground truth. The two ROI losses sample proposals with the
student's ``label_and_sample_proposals`` (its ``ROI_HEADS`` settings) against their own
set of pseudo boxes, each with its own sampling:

- classification, the "soft teacher": foreground proposals weigh 1, background ones
  weigh the teacher's background probability of the same region in the teacher view;
- regression: Detectron2's box regression loss against the low-uncertainty pseudo boxes.
"""
from typing import Dict, List, Tuple

import torch
from torch.nn import functional as F

from detectron2.layers import cat
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, Instances

from .box_head import box_head_predictions
from .pseudo_labels import teacher_background_probs
from .view_geometry import transform_boxes


def soft_weighted_cls_loss(
    pred_logits: torch.Tensor, gt_classes: torch.Tensor, background_weights: torch.Tensor
) -> torch.Tensor:
    """``sum(w_i * CE_i) / max(sum(w_i), 1)`` with ``w_i = 1`` (foreground) or the given background weight.

    Args:
        pred_logits: ``(R, K + 1)`` class logits, background last.
        gt_classes: ``(R,)`` labels in ``[0, K]``; ``K`` is background.
        background_weights: ``(R,)`` weights, used where ``gt_classes == K``.

    Returns:
        A scalar; 0 (still connected to ``pred_logits``) when ``R == 0``.
    """
    num_classes = pred_logits.shape[1] - 1
    weights = torch.where(gt_classes == num_classes, background_weights.float(), 1.0)
    per_proposal = F.cross_entropy(pred_logits.float(), gt_classes, reduction="none")
    return (weights * per_proposal).sum() / weights.sum().clamp(min=1.0)


def unsup_roi_cls_loss(
    student_heads: StandardROIHeads,
    student_features: Dict[str, torch.Tensor],
    proposals: List[Instances],
    pseudo_labels: List[Instances],
    teacher_heads: StandardROIHeads,
    teacher_features: Dict[str, torch.Tensor],
    student_to_teacher: List[torch.Tensor],
    teacher_image_sizes: List[Tuple[int, int]],
) -> torch.Tensor:
    """The soft-teacher classification loss of the student's box head.

    Args:
        student_heads, student_features: the student's ROI heads and student-view features.
        proposals: per image, the student RPN's proposals (``proposal_boxes``,
            ``objectness_logits``), student view.
        pseudo_labels: per image, the classification pseudo boxes (``gt_boxes``, ``gt_classes``),
            student view.
        teacher_heads, teacher_features: the teacher's ROI heads and teacher-view features.
        student_to_teacher: per image, the ``(3, 3)`` student view -> teacher view matrix,
            ``inverse(M)``; the sampled proposals travel through it (4 corners, enclosing box)
            and are clipped to the teacher view, as in the reference, to be scored by the teacher.
        teacher_image_sizes: per image, the teacher view's unpadded ``(height, width)``
            (``TeacherOutput.images.image_sizes``).

    Returns:
        The scalar loss, times the box predictor's ``loss_cls`` weight.
    """
    sampled = student_heads.label_and_sample_proposals(proposals, pseudo_labels)
    logits, _ = box_head_predictions(student_heads, student_features, [p.proposal_boxes for p in sampled])
    boxes_in_teacher_view = []
    for p, matrix, size in zip(sampled, student_to_teacher, teacher_image_sizes):
        boxes = Boxes(transform_boxes(p.proposal_boxes.tensor, matrix))
        boxes.clip(size)
        boxes_in_teacher_view.append(boxes)
    background_probs = teacher_background_probs(teacher_heads, teacher_features, boxes_in_teacher_view)
    gt_classes = cat([p.gt_classes for p in sampled], dim=0)
    loss = soft_weighted_cls_loss(logits, gt_classes, background_probs)
    return loss * student_heads.box_predictor.loss_weight.get("loss_cls", 1.0)


def unsup_roi_reg_loss(
    student_heads: StandardROIHeads,
    student_features: Dict[str, torch.Tensor],
    proposals: List[Instances],
    pseudo_labels: List[Instances],
) -> torch.Tensor:
    """Detectron2's box regression loss (``ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE``) on the sampled foreground.

    Args:
        student_heads, student_features, proposals: as in :func:`unsup_roi_cls_loss`.
        pseudo_labels: per image, the regression pseudo boxes (``gt_boxes``, ``gt_classes``),
            student view.

    Returns:
        The scalar loss (normalised by the number of sampled proposals, as Detectron2 does),
        times the box predictor's ``loss_box_reg`` weight; 0, still connected, without foreground.
    """
    sampled = student_heads.label_and_sample_proposals(proposals, pseudo_labels)
    _, deltas = box_head_predictions(student_heads, student_features, [p.proposal_boxes for p in sampled])
    proposal_boxes = cat([p.proposal_boxes.tensor for p in sampled], dim=0)
    # An image without pseudo boxes has background samples only and no gt_boxes; their
    # placeholder never enters the loss, which only looks at foreground samples.
    gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in sampled], dim=0)
    gt_classes = cat([p.gt_classes for p in sampled], dim=0)
    predictor = student_heads.box_predictor
    loss = predictor.box_reg_loss(proposal_boxes, gt_boxes, deltas, gt_classes)
    return loss * predictor.loss_weight.get("loss_box_reg", 1.0)
