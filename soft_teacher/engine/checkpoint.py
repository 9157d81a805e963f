"""Checkpoints of a teacher-student detector, and plain Detectron2 weights loaded into one.

Saving is Detectron2's: the model's state dict, which holds both models (``teacher.*`` and
``student.*``), plus the checkpointables the trainer registers (its iteration, optimizer,
LR scheduler and AMP grad scaler).

Loading into a teacher-student model:

- a checkpoint with ``teacher.*`` and ``student.*`` keys gives each model its own weights;
- a checkpoint with ``student.*`` keys but no ``teacher.*`` loads the student's weights into
  both models, with a warning;
- a plain detector checkpoint (a model-zoo detector, an ImageNet backbone, an exported
  teacher) loads into the student, and the teacher becomes a copy of the student (weights the
  checkpoint lacks included): the model's own load hook does it (see
  :mod:`soft_teacher.modeling.soft_teacher`), so stock ``DetectionCheckpointer`` does it too.

Loading a teacher-student checkpoint into a plain detector (``GeneralizedRCNN``) takes the
teacher's weights, or the student's, with a warning, when it has no teacher.

For inference and the tools: :func:`load_model` gives the model of a config (a SoftTeacher keeps both
detectors); :func:`load_detector` and :func:`export_teacher` give the plain detector inside it, whose
weights are the teacher's (see :func:`detector_state_dict`); :func:`soft_teacher.config.detector_config` is its config.
"""
import logging
import os
from collections import OrderedDict
from typing import Mapping

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from soft_teacher.config import detector_config
from soft_teacher.modeling.soft_teacher import STUDENT_PREFIX, TEACHER_PREFIX, is_soft_teacher_state_dict

_DDP_PREFIX = "module."

logger = logging.getLogger(__name__)


def sub_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> "OrderedDict[str, torch.Tensor]":
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return OrderedDict((key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))


def detector_state_dict(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """The weights of one plain detector from a checkpoint's model state dict.

    Returns the teacher's weights of a teacher-student state dict; the student's, with a
    warning, when it has no teacher; a plain detector state dict unchanged.
    """
    teacher = sub_state_dict(state_dict, TEACHER_PREFIX)
    if teacher:
        return teacher
    student = sub_state_dict(state_dict, STUDENT_PREFIX)
    if student:
        logger.warning(
            "The checkpoint has student weights but no teacher weights (no 'teacher.*' keys): "
            "using the student's weights for the teacher as well."
        )
        return student
    return OrderedDict(state_dict)


def _strip_ddp_prefix(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    if state_dict and all(key.startswith(_DDP_PREFIX) for key in state_dict):
        return sub_state_dict(state_dict, _DDP_PREFIX)
    return OrderedDict(state_dict)


class SoftTeacherCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that loads any of the checkpoints above into a plain detector or a SoftTeacher.

    Construct it like ``DetectionCheckpointer(model, save_dir, **checkpointables)``; ``model``
    may be wrapped in DistributedDataParallel. Beyond Detectron2's, it gives a plain detector the
    teacher of a teacher-student checkpoint, a SoftTeacher the student of a checkpoint without
    teacher, and matches a model-zoo ``.pkl``'s names against one of the two detectors. One
    detector's weights reach both of SoftTeacher's detectors through SoftTeacher's own load hook;
    another teacher-student model, without that hook, loads only checkpoints with both
    ``teacher.*`` and ``student.*`` weights.
    """

    def _load_model(self, checkpoint):
        state_dict = _strip_ddp_prefix(checkpoint["model"])
        model_state = self.model.state_dict()
        if not is_soft_teacher_state_dict(model_state):
            checkpoint["model"] = detector_state_dict(state_dict)
        elif sub_state_dict(state_dict, TEACHER_PREFIX) and sub_state_dict(state_dict, STUDENT_PREFIX):
            checkpoint["model"] = state_dict
        else:  # one detector's weights, which the model's load hook gives to both
            checkpoint["model"] = detector_state_dict(state_dict)
            if checkpoint.get("matching_heuristics", False):
                # Model-zoo .pkl files: Detectron2 matches names against the whole model, where each fits both
                # detectors; match them against the student's.
                self._convert_ndarray_to_tensor(checkpoint["model"])
                checkpoint["model"] = align_and_update_state_dicts(
                    sub_state_dict(model_state, STUDENT_PREFIX),
                    checkpoint["model"],
                    c2_conversion=checkpoint.get("__author__") == "Caffe2",
                )
                checkpoint["matching_heuristics"] = False
        return super()._load_model(checkpoint)


# ----------------------------------------------------------------------------- for inference and the tools


def _require_checkpoint(checkpoint: str) -> None:
    if "://" not in checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"Checkpoint {checkpoint} not found. Pass a file that train_net.py wrote to OUTPUT_DIR "
            "(e.g. model_final.pth) or a Detectron2 model-zoo URL."
        )


def load_model(cfg: CfgNode, checkpoint: str) -> torch.nn.Module:
    """Build the model of ``cfg``, load ``checkpoint`` (a file or a model-zoo URL) into it, put it in eval mode.

    Raises:
        FileNotFoundError: no such checkpoint file (the message says what to pass).
    """
    _require_checkpoint(checkpoint)
    model = build_model(cfg)
    SoftTeacherCheckpointer(model).load(checkpoint)
    return model.eval()


def load_detector(cfg: CfgNode, checkpoint: str) -> torch.nn.Module:
    """A plain detector of ``cfg`` (a Soft Teacher config's detector) with ``checkpoint``'s weights, in eval mode.

    A Soft Teacher checkpoint gives its teacher.

    Raises:
        FileNotFoundError: no such checkpoint file (the message says what to pass).
    """
    _require_checkpoint(checkpoint)
    detector = build_model(detector_config(cfg))
    SoftTeacherCheckpointer(detector).load(checkpoint)
    return detector.eval()


def export_teacher(cfg: CfgNode, checkpoint_path: str, output_path: str) -> None:
    """Write the teacher of ``checkpoint_path`` (a SoftTeacherTrainer checkpoint) to ``output_path``.

    The file, ``{"model": <GeneralizedRCNN state dict>, "__author__": ...}``, is what stock Detectron2
    loads with ``cfg``'s ``MODEL`` section and ``MODEL.META_ARCHITECTURE GeneralizedRCNN``. The teacher
    is loaded into ``cfg``'s detector (on the CPU) first, so that a mismatch fails here, not there.
    A checkpoint without teacher weights exports its student, with a warning.

    Raises:
        FileNotFoundError: no such checkpoint file (the message says what to pass).
        ValueError: the checkpoint holds no teacher or student, its detector does not match
            ``cfg``'s, or ``output_path`` ends in .pkl/.pyth (which Detectron2 reads as other formats).
    """
    if output_path.endswith((".pkl", ".pyth")):
        raise ValueError(
            f"Output '{output_path}': Detectron2 reads .pkl and .pyth files as other formats; use a .pth name."
        )
    _require_checkpoint(checkpoint_path)
    checkpoint = torch.load(checkpoint_path, map_location="cpu")
    state_dict = checkpoint.get("model", checkpoint)
    if not is_soft_teacher_state_dict(state_dict):
        raise ValueError(
            f"'{checkpoint_path}' has no 'teacher.*' or 'student.*' weights: it is not a Soft Teacher checkpoint "
            "(a plain Detectron2 checkpoint needs no export)."
        )
    cpu_cfg = detector_config(cfg)
    cpu_cfg.MODEL.DEVICE = "cpu"
    detector = build_model(cpu_cfg)
    try:
        incompatible = detector.load_state_dict(detector_state_dict(state_dict), strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"The teacher in '{checkpoint_path}' does not match the config's detector: {err}") from None
    if incompatible.missing_keys or incompatible.unexpected_keys:
        raise ValueError(
            f"The teacher in '{checkpoint_path}' does not match the config's detector: missing keys "
            f"{incompatible.missing_keys[:5]}, unexpected keys {incompatible.unexpected_keys[:5]}. "
            "Use the config the checkpoint was trained with."
        )
    torch.save({"model": detector.state_dict(), "__author__": "soft_teacher tools/export_teacher.py"}, output_path)
    logger.info(f"Wrote the teacher of {checkpoint_path} to {output_path}.")
