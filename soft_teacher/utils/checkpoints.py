"""Checkpoints for the tools: load one for inference, or export its teacher as a plain Detectron2 checkpoint.

:func:`load_model` gives the model of a config (a SoftTeacher keeps both detectors);
:func:`load_detector` and :func:`export_teacher` give the plain detector inside it, whose weights
are the teacher's (see :func:`soft_teacher.engine.detector_state_dict`).
"""
import logging
import os

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from soft_teacher.engine import SoftTeacherCheckpointer, detector_state_dict, is_soft_teacher_state_dict

__all__ = ["detector_config", "export_teacher", "load_detector", "load_model"]

logger = logging.getLogger(__name__)


def detector_config(cfg: CfgNode) -> CfgNode:
    """A copy of ``cfg`` that builds the plain detector inside a Soft Teacher model."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    return cfg


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
