#!/usr/bin/env python
"""Write the teacher of a Soft Teacher checkpoint as a plain Detectron2 checkpoint.

    python tools/export_teacher.py --config-file CONFIG --checkpoint output/model_final.pth \\
        --output teacher.pth [KEY VALUE ...]

The output, ``{"model": <GeneralizedRCNN state dict>, "__author__": ...}``, is what stock
Detectron2 loads for inference with the same config's ``MODEL`` section and
``MODEL.META_ARCHITECTURE GeneralizedRCNN``: ``DefaultPredictor``, or ``--eval-only
MODEL.WEIGHTS teacher.pth`` of any Detectron2 project. The teacher is checked against the
config's detector before writing. A checkpoint without teacher weights exports its student,
with a warning.
"""
import argparse
import logging
import sys
from typing import Optional, Sequence

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

import soft_teacher  # noqa: F401  (registers the meta-architecture)
from soft_teacher.engine import detector_state_dict, is_soft_teacher_state_dict, load_config

logger = logging.getLogger("soft_teacher.export_teacher")


def detector_config(cfg: CfgNode) -> CfgNode:
    """``cfg`` for the plain detector inside a Soft Teacher model, on the CPU."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def export_teacher(cfg: CfgNode, checkpoint_path: str, output_path: str) -> None:
    """Write the teacher of ``checkpoint_path`` (a SoftTeacherTrainer checkpoint) to ``output_path``.

    Raises:
        ValueError: the checkpoint holds no teacher or student, its detector does not match
            ``cfg``'s, or ``output_path`` ends in .pkl/.pyth (which Detectron2 reads as other formats).
    """
    if output_path.endswith((".pkl", ".pyth")):
        raise ValueError(
            f"Output '{output_path}': Detectron2 reads .pkl and .pyth files as other formats; use a .pth name."
        )
    checkpoint = torch.load(checkpoint_path, map_location="cpu")
    state_dict = checkpoint.get("model", checkpoint)
    if not is_soft_teacher_state_dict(state_dict):
        raise ValueError(
            f"'{checkpoint_path}' has no 'teacher.*' or 'student.*' weights: it is not a Soft Teacher checkpoint "
            "(a plain Detectron2 checkpoint needs no export)."
        )
    detector = build_model(detector_config(cfg))
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


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the config of the checkpoint's run")
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint written by train_net.py")
    parser.add_argument("--output", required=True, metavar="FILE", help="where to write the teacher (.pth)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logger(name="soft_teacher")
    try:
        cfg = load_config(args.config_file, args.opts)
        export_teacher(cfg, args.checkpoint, args.output)
    except ValueError as err:  # ConfigError included
        print(f"export_teacher.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
