"""The student's ROI losses on pseudo labels, computed in the student view.

The unsupervised RPN loss needs nothing here: it is the student RPN's own loss on pseudo boxes.
Each ROI loss samples the student's proposals against its own set of pseudo boxes with the
student's ``label_and_sample_proposals``: classification weighs a background proposal by the
teacher's background probability of the same region in the teacher view (the "soft teacher"),
regression is Detectron2's box loss against the low-uncertainty pseudo boxes.
"""
from typing import Dict, List, Tuple

import torch
from torch.nn import functional as F

from detectron2.layers import cat
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, Instances

from .box_head import box_head_predictions
from .pseudo_labels import teacher_background_probs
from .sync_free import clip_boxes
from .view_geometry import transform_boxes


def soft_weighted_cls_loss(
    pred_logits: torch.Tensor,
    gt_classes: torch.Tensor,
    background_weights: torch.Tensor,
    class_agnostic: bool = False,
) -> torch.Tensor:
    """``sum(w_i * CE_i) / max(sum(w_i), 1)``, ``w_i`` 1 for foreground, ``background_weights[i]`` for background.

    ``pred_logits`` is ``(R, K + 1)``, ``gt_classes`` and ``background_weights`` ``(R,)``, class ``K`` the
    background. With ``class_agnostic`` a foreground proposal's ``CE_i`` is ``-log(1 - p_background)``:
    the student learns that an object is there, not which class the teacher named. With ``R == 0`` the
    loss is 0, still connected to ``pred_logits``.
    """
    num_classes = pred_logits.shape[1] - 1
    is_background = gt_classes == num_classes
    weights = torch.where(is_background, background_weights.float(), 1.0)
    if class_agnostic:
        log_probs = F.log_softmax(pred_logits.float(), dim=1)
        log_foreground = torch.logsumexp(log_probs[:, :num_classes], dim=1)
        per_proposal = -torch.where(is_background, log_probs[:, num_classes], log_foreground)
    else:
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
    class_agnostic: bool = False,
) -> torch.Tensor:
    """The soft-teacher classification loss of the student's box head, times its ``loss_cls`` weight.

    ``proposals`` (student RPN) and ``pseudo_labels`` (``gt_boxes``, ``gt_classes``) are per image in
    the student view. The sampled proposals move through ``student_to_teacher`` (per image, ``(3, 3)``
    student -> teacher view) and are clipped to the unpadded teacher view sizes, as in the reference,
    so that the teacher scores them on its own ``teacher_features``. ``class_agnostic``: see
    :func:`soft_weighted_cls_loss`.
    """
    sampled = student_heads.label_and_sample_proposals(proposals, pseudo_labels)
    logits, _ = box_head_predictions(student_heads, student_features, [p.proposal_boxes for p in sampled])
    boxes_in_teacher_view = [
        Boxes(clip_boxes(transform_boxes(p.proposal_boxes.tensor, matrix), size))
        for p, matrix, size in zip(sampled, student_to_teacher, teacher_image_sizes)
    ]
    background_probs = teacher_background_probs(teacher_heads, teacher_features, boxes_in_teacher_view)
    gt_classes = cat([p.gt_classes for p in sampled], dim=0)
    loss = soft_weighted_cls_loss(logits, gt_classes, background_probs, class_agnostic)
    return loss * student_heads.box_predictor.loss_weight.get("loss_cls", 1.0)


def unsup_roi_reg_loss(
    student_heads: StandardROIHeads,
    student_features: Dict[str, torch.Tensor],
    proposals: List[Instances],
    pseudo_labels: List[Instances],
) -> torch.Tensor:
    """Detectron2's box regression loss of the sampled foreground, times its ``loss_box_reg`` weight.

    Arguments as in :func:`unsup_roi_cls_loss`, all in the student view. Normalised by the number of
    sampled proposals, as Detectron2 does; 0, still connected, without foreground.
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
