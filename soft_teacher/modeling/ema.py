"""The teacher follows the student by exponential moving average (EMA).

Parameters and floating-point buffers (BatchNorm running statistics) move as
``t <- m_k * t + (1 - m_k) * s``; integer buffers (``num_batches_tracked``) are copied. As in the
reference (microsoft/SoftTeacher ``MeanTeacher``, ``warm_up=0``) the momentum of the ``k``-th update
is ``m_k = min(m, 1 - 1 / (k + 1))``: until it reaches ``m`` the teacher is the plain mean of the
students seen so far, so the first, poor students do not linger in it for ~1 / (1 - m) steps.
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


def _state_pairs(teacher: nn.Module, student: nn.Module):
    """``(teacher tensor, student tensor)`` of every parameter, then every buffer, paired by name."""
    return (_paired(teacher.named_parameters(), student.named_parameters())
            + _paired(teacher.named_buffers(), student.named_buffers()))


def ema_momentum(momentum: float, num_updates: int) -> float:
    """``m_k`` after ``k = num_updates`` earlier updates: 0 (a copy of the student), 1/2, 2/3, ... <= ``momentum``."""
    if num_updates < 0:
        raise ValueError(f"The number of teacher updates must be >= 0, got {num_updates}.")
    return min(momentum, 1.0 - 1.0 / (num_updates + 1))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place, ``teacher = momentum * teacher + (1 - momentum) * student`` (unwrap DDP first).

    Momentum 0 copies the student exactly, even over a non-finite teacher.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum} (SOFT_TEACHER.EMA_MOMENTUM).")
    if momentum == 0.0:
        copy_student_to_teacher(teacher, student)
        return
    averaged, copied = [], []
    for pair in _state_pairs(teacher, student):
        (averaged if pair[0].is_floating_point() else copied).append(pair)
    if averaged:
        # Multi-tensor ops: a few kernel launches for the whole model instead of two per tensor
        # (an R50-FPN has about 300 parameters and buffers); the arithmetic is the same.
        teacher_tensors, student_tensors = map(list, zip(*averaged))
        torch._foreach_mul_(teacher_tensors, momentum)
        torch._foreach_add_(teacher_tensors, student_tensors, alpha=1.0 - momentum)
    for t, s in copied:
        t.copy_(s)


@torch.no_grad()
def copy_student_to_teacher(teacher: nn.Module, student: nn.Module) -> None:
    """In place: every teacher parameter and buffer becomes the student's (e.g. loading a plain checkpoint)."""
    for t, s in _state_pairs(teacher, student):
        t.copy_(s)
