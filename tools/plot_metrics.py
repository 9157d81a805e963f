#!/usr/bin/env python
"""Plot training curves from Detectron2 ``metrics.json`` files into one PNG.

Each run is an output folder (or its ``metrics.json``: one JSON object per line
with ``"iteration"`` and scalar keys, as Detectron2's ``JSONWriter`` writes it).
Several runs are overlaid, one colour per run, to compare them. The panels:

- total loss (``total_loss``);
- supervised losses (``sup_loss_*``, or a plain Detectron2 run's ``loss_*``);
- unsupervised losses (``unsup_loss_*``, already weighted by ``SOFT_TEACHER.UNSUP_WEIGHT``);
- box AP on the test set (``teacher/bbox/AP``, ``student/bbox/AP``, or a plain run's ``bbox/AP``; with
  several test sets, each under its name: ``teacher/shapes_test/bbox/AP``);
- pseudo boxes per image (``pseudo/boxes_per_image_rpn|cls|reg``) and the labeled images' boxes per image
  (``pseudo/boxes_per_image_labeled``), the level ``_cls`` would reach if the teacher found every object;
- the pseudo labels' class shares against the labeled set's (``pseudo/class_share_distance``,
  ``pseudo/class_share_max_ratio``) and the teacher's mean score: what tells, without annotations, that
  the teacher has started to name objects of several classes as one;
- pseudo-label precision, recall and wrong-class share (``pseudo/precision``, ``pseudo/recall``,
  ``pseudo/wrong_class_share``), where the unlabeled images carry hidden annotations.

A key that a run never logged is simply absent from its panel; a panel no run
has data for says so. :func:`load_metrics` (the one reader of ``metrics.json``, which the other tools
import from here) turns such a file into ``{key: (iterations, values)}``; :func:`plot_metrics` draws
one or several runs' curves into one PNG.

Usage::

    python tools/plot_metrics.py output/coco/soft_teacher_R50_FPN_10pct_fold1
    python tools/plot_metrics.py output/run_a output/run_b --labels "soft teacher" supervised \\
        --output compare.png
"""
import argparse
import json
import os
import re
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from matplotlib.figure import Figure

__all__ = ["METRICS_FILE", "PANELS", "LINE_STYLES", "Series", "resolve_metrics_path", "metrics_records",
           "load_metrics", "plot_metrics", "default_plot_path"]

METRICS_FILE = "metrics.json"

# (panel title, y-axis label, regular expression the plotted keys match)
PANELS = (
    ("Total loss", "loss", r"total_loss"),
    ("Supervised losses", "loss", r"(sup_)?loss_\w+"),
    ("Unsupervised losses (weighted)", "loss", r"unsup_loss_\w+"),
    ("Box AP", "AP", r"((teacher|student)/)?([^/]+/)?bbox/AP"),
    ("Pseudo boxes per image", "boxes / image", r"pseudo/boxes_per_image_\w+"),
    ("Pseudo-label class shares (no annotations needed)", "distance, ratio, score",
     r"pseudo/(class_share_distance|class_share_max_ratio|teacher_score_mean)"),
    ("Pseudo-label quality", "fraction", r"pseudo/(precision|recall|wrong_class_share)"),
)
LINE_STYLES = ("-", "--", ":", "-.")

Series = Dict[str, Tuple[List[int], List[float]]]


def resolve_metrics_path(path: str) -> str:
    """The ``metrics.json`` of an output folder, or ``path`` itself if it is a file."""
    candidate = os.path.join(path, METRICS_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(candidate):
        raise FileNotFoundError(
            f"No metrics file at '{candidate}'. Pass a training output folder (cfg.OUTPUT_DIR), where "
            f"train_net.py writes {METRICS_FILE} while it trains, or the path of such a file."
        )
    return candidate


def metrics_records(path: str) -> List[dict]:
    """The records of a run's ``metrics.json`` (an output folder or the file), one dict per line, in file order.

    Raises:
        FileNotFoundError: no such file (the message says what to pass).
        ValueError: a line is not a JSON object with an ``"iteration"`` (the message names the line).
    """
    path = resolve_metrics_path(path)
    records = []
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {line_number}: not a JSON object ({err}).") from None
            if not isinstance(record, dict) or "iteration" not in record:
                raise ValueError(f"{path}, line {line_number}: expected a JSON object with an 'iteration' key.")
            records.append(record)
    return records


def load_metrics(path: str) -> Series:
    """Read one run's scalars: ``{key: (iterations, values)}`` sorted by iteration.

    Lines of the same iteration are merged (evaluation results arrive on a line
    of their own); when a resumed run logs an iteration again, its later value wins.
    """
    by_key: Dict[str, Dict[int, float]] = defaultdict(dict)
    for record in metrics_records(path):
        iteration = int(record["iteration"])
        for key, value in record.items():
            if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                by_key[key][iteration] = float(value)
    return {key: (sorted(points), [points[i] for i in sorted(points)]) for key, points in by_key.items()}


def plot_metrics(
    metrics_paths: Sequence[str], output_png: str, labels: Optional[Sequence[str]] = None
) -> Dict[str, List[str]]:
    """Draw the :data:`PANELS` for one or several runs and save them to ``output_png``.

    The panels: total loss; supervised losses (``sup_loss_*``, or a plain Detectron2 run's
    ``loss_*``); unsupervised losses (``unsup_loss_*``, already weighted); box AP on the test set
    (``teacher/bbox/AP``, ``student/bbox/AP``, or a plain run's ``bbox/AP``; with several test sets, one
    line each); pseudo boxes per image; the pseudo labels' class shares against the labeled set's and the
    teacher's mean score; pseudo-label precision, recall and wrong-class share. A key that a run never logged is
    simply absent from its panel; a panel no run has data for says so.

    Args:
        metrics_paths: output folders or ``metrics.json`` files, one per run.
        output_png: where the figure goes (parent folders are created).
        labels: one legend name per run; defaults to each run's folder name.

    Returns:
        ``{panel title: [legend entries drawn]}``; an entry is the key for a single
        run and ``"label: key"`` for several.
    """
    if not metrics_paths:
        raise ValueError("Give at least one output folder or metrics.json to plot.")
    if labels is None:
        labels = [_run_name(path) for path in metrics_paths]
    if len(labels) != len(metrics_paths):
        raise ValueError(f"Got {len(labels)} labels for {len(metrics_paths)} runs; give one label per run.")
    runs = [load_metrics(path) for path in metrics_paths]
    several = len(runs) > 1

    columns = 3
    rows = -(-len(PANELS) // columns)
    figure = Figure(figsize=(6 * columns, 4 * rows), tight_layout=True)
    drawn: Dict[str, List[str]] = {}
    for index, (title, y_label, pattern) in enumerate(PANELS):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.set_title(title)
        axes.set_xlabel("iteration")
        axes.set_ylabel(y_label)
        keys = sorted({key for run in runs for key in run if re.fullmatch(pattern, key)})
        entries = []
        for run_index, (run, label) in enumerate(zip(runs, labels)):
            for key_index, key in enumerate(keys):
                if key not in run:
                    continue
                iterations, values = run[key]
                entry = f"{label}: {key}" if several else key
                style = _line_style(run_index, key_index, several)
                axes.plot(iterations, values, label=entry, marker="o" if len(values) == 1 else None, **style)
                entries.append(entry)
        if entries:
            axes.legend(fontsize="small")
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="gray")
        drawn[title] = entries

    parent = os.path.dirname(output_png)
    if parent:
        os.makedirs(parent, exist_ok=True)
    figure.savefig(output_png, dpi=100)
    return drawn


def default_plot_path(path: str) -> str:
    """``metrics.png`` beside a run's ``metrics.json`` (``path``: its output folder or the file)."""
    return os.path.join(os.path.dirname(resolve_metrics_path(path)), "metrics.png")


def _run_name(path: str) -> str:
    folder = os.path.dirname(path) if os.path.isfile(path) else path
    return os.path.basename(os.path.normpath(folder)) or path


def _line_style(run_index: int, key_index: int, several: bool) -> dict:
    """One colour per key for a single run; one colour per run, one dash per key for several."""
    if not several:
        return {"color": f"C{key_index % 10}", "linestyle": "-"}
    return {"color": f"C{run_index % 10}", "linestyle": LINE_STYLES[key_index % len(LINE_STYLES)]}

# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
