"""The SoftTeacher meta-architecture and its pieces.

Importing this package registers ``SoftTeacher`` in Detectron2's ``META_ARCH_REGISTRY`` and
``build_small_resnet_fpn_backbone`` in its ``BACKBONE_REGISTRY``.
"""
from .backbone import build_small_resnet_fpn_backbone  # registers it in BACKBONE_REGISTRY
from .ema import copy_student_to_teacher
from .pseudo_labels import PseudoLabelRecord, split_pseudo_labels, teacher_pseudo_labels
from .soft_teacher import SoftTeacher  # registers SoftTeacher in META_ARCH_REGISTRY
from .view_geometry import instances_to_view, view_to_view_matrix

__all__ = [
    "PseudoLabelRecord",
    "SoftTeacher",
    "build_small_resnet_fpn_backbone",
    "copy_student_to_teacher",
    "instances_to_view",
    "split_pseudo_labels",
    "teacher_pseudo_labels",
    "view_to_view_matrix",
]
