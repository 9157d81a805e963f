"""Reaching the two models of a teacher-student detector through any wrapper.

A teacher-student model is any module with ``.teacher`` and ``.student`` submodules
(``soft_teacher.modeling.SoftTeacher``); the trainer may wrap it in
DistributedDataParallel, whose ``.module`` is the model itself.
"""
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a (Distributed)DataParallel wrapper, or ``model`` itself."""
    return model.module if isinstance(model, (DataParallel, DistributedDataParallel)) else model


def is_teacher_student(model: nn.Module) -> bool:
    """Whether ``model`` (possibly wrapped) has ``.teacher`` and ``.student`` modules."""
    model = unwrap_model(model)
    return isinstance(getattr(model, "teacher", None), nn.Module) and isinstance(
        getattr(model, "student", None), nn.Module
    )
