#!/usr/bin/env python
"""How good a checkpoint's pseudo labels are, on unlabeled images that carry hidden annotations.

For a random sample of a registered dataset's images, the teacher view is built as training
builds it (``UnlabeledDatasetMapper``), pseudo-labelled with the config's
``SOFT_TEACHER.INITIAL_SCORE_THRESH`` / ``JITTER_TIMES`` / ``JITTER_SCALE``, and compared with
the image's annotations moved into that view. Printed (and written with ``--output`` as JSON):

- per score threshold (those of 0.5 ... 0.95 not below ``INITIAL_SCORE_THRESH``): pseudo boxes
  per image, precision and recall (greedy one-to-one matching at IoU 0.5, as training's
  ``pseudo/precision_at_T``), and the share of the boxes false for each cause: a duplicate of a
  matched box, on an object of another class, mislocated (IoU 0.1-0.5), on background;
- the most frequent wrong-class pairs (annotated class, pseudo class) at ``SOFT_TEACHER.CLS_PSEUDO_THRESH``;
- percentiles of the candidates' box-jitter uncertainty;
- per uncertainty threshold: the candidates below it, their mean IoU with the best annotation
  of their class and the share with IoU >= 0.75 (does low uncertainty single out well-localised boxes?);
- per geometric op of the student view (all four, those the config leaves out marked), per class: the
  share of annotated objects whose box, moved with the image as a pseudo box is, the detector's box
  head still gives their class, gives background, or gives another class (which). A pseudo label is
  made on the teacher view; an op that changes what an object looks like as a class (on the shapes
  set, shear makes circles elliptic) teaches the student a wrong class.

A Soft Teacher checkpoint is measured through its teacher, a plain detector's as it is.

Usage::

    python tools/measure_pseudo_labels.py --config-file configs/shapes/supervised_R18_FPN_5pct.yaml \\
        --checkpoint output/shapes/supervised_R18_FPN_5pct/model_final.pth \\
        --dataset shapes_train_5pct_1_unlabeled --num 150 --output pseudo_label_quality.json
"""
import argparse
import json
import os
import sys
from typing import Optional, Sequence

import torch

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.data import MetadataCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from soft_teacher.data import UnlabeledDatasetMapper
from soft_teacher.engine import load_config
from soft_teacher.modeling.pseudo_label_quality import measure_pseudo_labels
from soft_teacher.utils.checkpoints import load_detector
from soft_teacher.utils.measure import (
    box_head_classifier,
    class_under_ops,
    format_class_under_ops,
    format_figures,
    sample_dataset_dicts,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the config the checkpoint trained with")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint (.pth/.pkl) or model-zoo URL")
    parser.add_argument("--dataset", required=True,
                        help="registered dataset whose images carry (hidden) annotations, e.g. an unlabeled split")
    parser.add_argument("--num", type=int, default=150, help="images to sample (default 150; all if fewer)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image sample and the view augmentations")
    parser.add_argument("--output", metavar="FILE", help="also write every figure to this JSON file")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logger(name="soft_teacher")
    torch.set_num_threads(args.num_threads)
    try:
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        dataset_dicts = sample_dataset_dicts(args.dataset, args.num, args.seed)
        model = load_detector(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError) as err:  # ValueError includes ConfigError; the message says what to fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    seed_all_rng(args.seed)
    st = cfg.SOFT_TEACHER
    figures = measure_pseudo_labels(model, UnlabeledDatasetMapper(cfg, is_train=True), dataset_dicts,
                                    st.INITIAL_SCORE_THRESH, st.JITTER_TIMES, st.JITTER_SCALE, st.CLS_PSEUDO_THRESH)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    class_names = MetadataCatalog.get(args.dataset).get("thing_classes", None)
    if class_names is None or len(class_names) != num_classes:  # the model's classes are what it names
        class_names = [f"class {k}" for k in range(num_classes)]
    print(f"Pseudo labels of {args.checkpoint} on {args.dataset}:")
    print(format_figures(figures, class_names))
    try:
        counts = class_under_ops(box_head_classifier(model), cfg, dataset_dicts, num_classes)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\nClass the box head gives each annotated object after each geometric op of the student view:")
    print(format_class_under_ops(counts, class_names, cfg.INPUT.STRONG_GEOMETRIC_OPS))
    if args.output:
        report = {"config_file": args.config_file, "checkpoint": args.checkpoint, "dataset": args.dataset,
                  "num": args.num, "seed": args.seed, "jitter_times": st.JITTER_TIMES,
                  "jitter_scale": st.JITTER_SCALE, **figures,
                  "class_under_ops": {"classes": list(class_names), "used_ops": list(cfg.INPUT.STRONG_GEOMETRIC_OPS),
                                      "counts": {op: matrix.tolist() for op, matrix in counts.items()}}}
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
