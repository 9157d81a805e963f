"""State-dict keys of ``SoftTeacher``: ``teacher.<detector key>`` and ``student.<detector key>``.

A plain Detectron2 checkpoint (a model-zoo detector, or the teacher exported alone) has
detector keys only; :func:`expand_plain_state_dict` gives each of its weights to both models.
"""
from collections import OrderedDict
from typing import Mapping

MODEL_PREFIXES = ("teacher.", "student.")


def is_soft_teacher_state_dict(state_dict: Mapping[str, object]) -> bool:
    """Whether some key already names one of the two models."""
    return any(key.startswith(MODEL_PREFIXES) for key in state_dict)


def expand_plain_state_dict(state_dict: Mapping[str, object]) -> "OrderedDict[str, object]":
    """Duplicate each key ``k`` of a plain detector state dict as ``teacher.k`` and ``student.k``.

    A state dict that already has ``teacher.``/``student.`` keys is returned unchanged
    (as an ``OrderedDict``). Values are shared, not copied: ``load_state_dict`` copies them.
    """
    if is_soft_teacher_state_dict(state_dict):
        return OrderedDict(state_dict)
    return OrderedDict((prefix + key, value) for prefix in MODEL_PREFIXES for key, value in state_dict.items())
