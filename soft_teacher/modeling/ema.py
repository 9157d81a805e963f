"""The teacher follows the student by exponential moving average (EMA).

After each optimizer step: ``t <- m * t + (1 - m) * s`` for every parameter and every
floating-point buffer (BatchNorm running statistics); integer buffers (BatchNorm's
``num_batches_tracked``) are copied. Teacher and student must have the same architecture.
"""
from typing import Iterator, Tuple

import torch
from torch import nn


def _paired(teacher_items: Iterator[Tuple[str, torch.Tensor]], student_items: Iterator[Tuple[str, torch.Tensor]]):
    teacher_items, student_items = list(teacher_items), list(student_items)
    teacher_names = [name for name, _ in teacher_items]
    student_names = [name for name, _ in student_items]
    if teacher_names != student_names:
        differing = sorted(set(teacher_names) ^ set(student_names))[:5] or teacher_names[:5]
        raise ValueError(
            "Teacher and student must have the same architecture (same parameter and buffer names, "
            f"same order); they differ, e.g. at {differing}. Build both from the same config."
        )
    return [(t, s) for (_, t), (_, s) in zip(teacher_items, student_items)]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: ``teacher = momentum * teacher + (1 - momentum) * student``.

    Args:
        teacher, student: modules with the same architecture (e.g. ``SoftTeacher.teacher`` and
            ``.student``; unwrap DistributedDataParallel first).
        momentum: ``m`` in ``[0, 1]``; 1 keeps the teacher, 0 copies the student.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum} (SOFT_TEACHER.EMA_MOMENTUM).")
    for t, s in _paired(teacher.named_parameters(), student.named_parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for t, s in _paired(teacher.named_buffers(), student.named_buffers()):
        if t.is_floating_point():
            t.mul_(momentum).add_(s, alpha=1.0 - momentum)
        else:
            t.copy_(s)


@torch.no_grad()
def copy_student_to_teacher(teacher: nn.Module, student: nn.Module) -> None:
    """In place: every teacher parameter and buffer becomes the student's (e.g. at the end of burn-in)."""
    pairs = _paired(teacher.named_parameters(), student.named_parameters())
    pairs += _paired(teacher.named_buffers(), student.named_buffers())
    for t, s in pairs:
        t.copy_(s)
