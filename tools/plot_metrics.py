#!/usr/bin/env python
"""Plot training curves from Detectron2 ``metrics.json`` files into one PNG.

Each run is an output folder (or its ``metrics.json``: one JSON object per line
with ``"iteration"`` and scalar keys, as Detectron2's ``JSONWriter`` writes it).
Several runs are overlaid, one colour per run, to compare them. The panels:

- total loss (``total_loss``);
- supervised losses (``sup_loss_*``, or a plain Detectron2 run's ``loss_*``);
- unsupervised losses (``unsup_loss_*``, already weighted by ``SOFT_TEACHER.UNSUP_WEIGHT``);
- box AP on the test set (``teacher/bbox/AP``, ``student/bbox/AP``, or a plain run's ``bbox/AP``);
- pseudo boxes per image (``pseudo/boxes_per_image_rpn|cls|reg``);
- pseudo-label precision, recall and wrong-class share (``pseudo/precision``, ``pseudo/recall``,
  ``pseudo/wrong_class_share``).

A key that a run never logged is simply absent from its panel; a panel no run
has data for says so. The reading and drawing live in ``soft_teacher.utils.metrics``.

Usage::

    python tools/plot_metrics.py output/coco/soft_teacher_R50_FPN_10pct_fold1
    python tools/plot_metrics.py output/run_a output/run_b --labels "soft teacher" supervised \\
        --output compare.png
"""
import argparse
import sys
from typing import Optional, Sequence

from soft_teacher.utils.metrics import default_plot_path, plot_metrics


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="training output folders or metrics.json files")
    parser.add_argument(
        "--output", help="PNG to write (default: metrics.png in the first run's folder)"
    )
    parser.add_argument("--labels", nargs="+", help="one legend name per run (default: folder names)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        output = args.output or default_plot_path(args.runs[0])
        drawn = plot_metrics(args.runs, output, labels=args.labels)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    empty = [title for title, entries in drawn.items() if not entries]
    print(f"Wrote {output}" + (f" (no data for: {', '.join(empty)})" if empty else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
