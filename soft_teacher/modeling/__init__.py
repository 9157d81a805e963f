"""The SoftTeacher meta-architecture and its pieces.

Importing this package registers ``SoftTeacher`` in Detectron2's ``META_ARCH_REGISTRY``.
"""
from .ema import copy_student_to_teacher, ema_momentum, ema_update
from .pseudo_label_quality import pseudo_label_counts, stats_from_counts, true_positive_mask
from .pseudo_labels import (
    TeacherOutput,
    jitter_boxes,
    jitter_uncertainty,
    regression_uncertainty,
    split_pseudo_labels,
    teacher_background_probs,
    teacher_detections,
    teacher_pseudo_labels,
    training_proposal_counts,
)
from .soft_teacher import SoftTeacher
from .unsup_losses import soft_weighted_cls_loss, unsup_roi_cls_loss, unsup_roi_reg_loss
from .view_geometry import boxes_to_view, instances_to_view, transform_boxes, view_to_view_matrix

__all__ = [
    "SoftTeacher",
    "TeacherOutput",
    "boxes_to_view",
    "copy_student_to_teacher",
    "ema_momentum",
    "ema_update",
    "instances_to_view",
    "jitter_boxes",
    "jitter_uncertainty",
    "pseudo_label_counts",
    "regression_uncertainty",
    "soft_weighted_cls_loss",
    "split_pseudo_labels",
    "stats_from_counts",
    "true_positive_mask",
    "teacher_background_probs",
    "teacher_detections",
    "teacher_pseudo_labels",
    "training_proposal_counts",
    "transform_boxes",
    "unsup_roi_cls_loss",
    "unsup_roi_reg_loss",
    "view_to_view_matrix",
]
