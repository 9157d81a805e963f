"""Soft Teacher semi-supervised object detection for Detectron2.

Importing this package registers the ``SoftTeacher`` meta-architecture, the
built-in datasets and the data components with Detectron2's registries.
"""
from . import data, modeling  # noqa: F401  (registration side effects)
from .config import add_soft_teacher_config, get_cfg

__all__ = ["add_soft_teacher_config", "get_cfg"]
__version__ = "0.1.0"
