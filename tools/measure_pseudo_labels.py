#!/usr/bin/env python
"""How good a checkpoint's pseudo labels are, on unlabeled images that carry hidden annotations.

For a random sample of a registered dataset's images, the teacher view is built as training
builds it (``UnlabeledDatasetMapper``), pseudo-labelled with the config's
``SOFT_TEACHER.INITIAL_SCORE_THRESH`` / ``JITTER_TIMES`` / ``JITTER_SCALE``, and compared with
the image's annotations moved into that view. Printed (and written with ``--output`` as JSON):

- per score threshold (those of 0.5 ... 0.95 not below ``INITIAL_SCORE_THRESH``): pseudo boxes
  per image, precision and recall (greedy one-to-one matching at IoU 0.5, as training's
  ``pseudo/precision_at_T``);
- percentiles of the candidates' box-jitter uncertainty;
- per uncertainty threshold: the candidates below it, their mean IoU with the best annotation
  of their class and the share with IoU >= 0.75 (does low uncertainty single out well-localised boxes?).

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
from typing import List, Optional, Sequence

import numpy as np
import torch

from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from soft_teacher.data import UnlabeledDatasetMapper, register_custom_datasets
from soft_teacher.engine import SoftTeacherCheckpointer, load_config
from soft_teacher.modeling.pseudo_label_quality import measure_pseudo_labels, require_hidden_annotations


def sample_dataset_dicts(name: str, num: int, seed: int) -> List[dict]:
    """``num`` dicts (all, if fewer) of the registered dataset ``name``, drawn without replacement.

    Raises:
        FileNotFoundError: ``name`` is not registered.
        ValueError: its dicts have no annotations to measure against.
    """
    if name not in DatasetCatalog.list():
        raise FileNotFoundError(
            f"--dataset {name!r} is not a registered dataset: pass a name such as shapes_train_5pct_1_unlabeled, "
            "or declare your own with DATASETS.CUSTOM_COCO."
        )
    dicts = DatasetCatalog.get(name)
    indices = np.random.RandomState(seed).choice(len(dicts), min(num, len(dicts)), replace=False)
    sample = [dicts[i] for i in indices]
    require_hidden_annotations(sample, f"Dataset {name!r}")
    return sample


def load_detector(cfg, checkpoint: str) -> torch.nn.Module:
    """A plain detector of ``cfg`` (a Soft Teacher config's detector) with ``checkpoint``'s weights, in eval mode.

    A Soft Teacher checkpoint gives its teacher (see ``soft_teacher.engine.detector_state_dict``).
    """
    if "://" not in checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"Checkpoint {checkpoint} not found. Pass a file that train_net.py wrote to OUTPUT_DIR "
            "(e.g. model_final.pth) or a Detectron2 model-zoo URL."
        )
    detector_cfg = cfg.clone()
    detector_cfg.defrost()
    detector_cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    detector = build_model(detector_cfg)
    SoftTeacherCheckpointer(detector).load(checkpoint)
    return detector.eval()


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_figures(figures: dict) -> str:
    """The figures of ``measure_pseudo_labels`` as a readable table."""
    lines = [
        f"{figures['images']} images ({figures['skipped_images']} unreadable skipped), "
        f"{figures['annotations']} annotations, {figures['candidates']} candidate pseudo boxes "
        f"(score >= {figures['initial_score_thresh']:g})",
        "",
        f"{'score >=':>9} {'boxes/image':>12} {'precision':>10} {'recall':>8}",
    ]
    for row in figures["score_thresholds"]:
        lines.append(f"{row['threshold']:>9g} {_fmt(row['boxes_per_image'], 2):>12} "
                     f"{_fmt(row['precision']):>10} {_fmt(row['recall']):>8}")
    percentiles = figures["uncertainty_percentiles"]
    lines += ["", "uncertainty percentiles: " + "  ".join(f"{k} {_fmt(v, 4)}" for k, v in percentiles.items()), ""]
    lines.append(f"{'uncertainty <':>13} {'candidates':>10} {'mean IoU':>9} {'IoU >= 0.75':>12}")
    for row in figures["uncertainty_thresholds"]:
        threshold = "all" if row["threshold"] is None else f"{row['threshold']:g}"
        lines.append(f"{threshold:>13} {row['candidates']:>10} {_fmt(row['mean_iou']):>9} "
                     f"{_fmt(row['well_localised_share']):>12}")
    return "\n".join(lines)


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
        register_custom_datasets(cfg)
        dataset_dicts = sample_dataset_dicts(args.dataset, args.num, args.seed)
        model = load_detector(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError) as err:  # ValueError includes ConfigError; the message says what to fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    seed_all_rng(args.seed)
    st = cfg.SOFT_TEACHER
    figures = measure_pseudo_labels(model, UnlabeledDatasetMapper(cfg, is_train=True), dataset_dicts,
                                    st.INITIAL_SCORE_THRESH, st.JITTER_TIMES, st.JITTER_SCALE)
    print(f"Pseudo labels of {args.checkpoint} on {args.dataset}:")
    print(format_figures(figures))
    if args.output:
        report = {"config_file": args.config_file, "checkpoint": args.checkpoint, "dataset": args.dataset,
                  "num": args.num, "seed": args.seed, "jitter_times": st.JITTER_TIMES,
                  "jitter_scale": st.JITTER_SCALE, **figures}
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
