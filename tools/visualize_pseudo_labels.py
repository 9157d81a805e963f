#!/usr/bin/env python
"""Pictures of a checkpoint's pseudo labels: teacher view and student view side by side.

For each image, the teacher pseudo-labels the teacher view as training does, the boxes move into the
student view, and each box is coloured by the student losses it supervises (the picture's legend says
which colour is which). The drawing is ``soft_teacher.visualize``.

Usage::

    python tools/visualize_pseudo_labels.py --config-file configs/coco/soft_teacher_R50_FPN_10pct.yaml \\
        --checkpoint output/coco/soft_teacher_R50_FPN_10pct_fold1/model_final.pth \\
        --input coco_2017_train_10pct_1_unlabeled --output output/pseudo_labels --num 8
"""
import argparse
import sys
from typing import Optional, Sequence

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from soft_teacher.engine import load_config, load_model
from soft_teacher.visualize import draw_pseudo_labels, image_dicts


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the config the checkpoint trained with")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint (.pth/.pkl) or model-zoo URL")
    parser.add_argument("--input", required=True, help="an image, a folder of images, or a registered dataset name")
    parser.add_argument("--output", required=True, help="folder for the pictures")
    parser.add_argument("--num", type=int, default=8, help="pictures to draw, from the first images (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random view augmentations")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logger(name="soft_teacher")
    try:
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        dataset_dicts = image_dicts(args.input, args.num)
        model = load_model(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError) as err:  # ValueError includes ConfigError; the message says what to fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    seed_all_rng(args.seed)
    for picture in draw_pseudo_labels(model, cfg, dataset_dicts, args.output):
        in_view = len(picture.student_labels)
        print(f"{picture.path}: {len(picture.teacher_labels)} pseudo boxes, {in_view} in the student view")
    return 0


if __name__ == "__main__":
    sys.exit(main())
