#!/usr/bin/env python
"""Write the teacher of a Soft Teacher checkpoint as a plain Detectron2 checkpoint.

    python tools/export_teacher.py --config-file CONFIG --checkpoint output/model_final.pth \\
        --output teacher.pth [KEY VALUE ...]

The output, ``{"model": <GeneralizedRCNN state dict>, "__author__": ...}``, is what stock
Detectron2 loads for inference with the same config's ``MODEL`` section and
``MODEL.META_ARCHITECTURE GeneralizedRCNN``: ``DefaultPredictor``, or ``--eval-only
MODEL.WEIGHTS teacher.pth`` of any Detectron2 project. The teacher is checked against the
config's detector before writing. A checkpoint without teacher weights exports its student,
with a warning. The export is ``soft_teacher.engine.export_teacher``.
"""
import argparse
import sys
from typing import Optional, Sequence

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.utils.logger import setup_logger

from soft_teacher.engine import export_teacher, load_config


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    except (FileNotFoundError, ValueError) as err:  # ValueError includes ConfigError; the message says what to fix
        print(f"export_teacher.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
