#!/usr/bin/env python
"""The built-in demonstration (``make demo``): Soft Teacher on the synthetic shapes set, on a CPU.

Steps, each announced with its number; training logs its ETA every 20 iterations:

1. generate the shapes set under ``$DETECTRON2_DATASETS/shapes`` (default ``./datasets``),
   with a progress bar; a set generated before with the same settings is re-used;
2. train the config (default ``configs/shapes/soft_teacher_demo.yaml``: 10% of shapes_train
   labeled, the rest unlabeled) with the project's trainer, then evaluate the teacher and
   the student on ``shapes_val`` (COCO box AP);
3. draw the teacher's pseudo labels on unlabeled images (teacher view and student view
   side by side; see ``tools/visualize_pseudo_labels.py``) into ``pseudo_labels.png``;
4. plot the training curves from ``metrics.json`` into ``training_curves.png``.

It ends by printing where these are and the AP figures, also written to ``results.json``
with the time each step took. The output folder is the training ``OUTPUT_DIR`` as well
(log, metrics, config, ``model_final.pth``).

Usage::

    python tools/run_demo.py --output output/demo
    python tools/run_demo.py --output output/demo_supervised --config-file configs/shapes/supervised_demo.yaml
    python tools/run_demo.py --output output/demo_quick SOLVER.MAX_ITER 100 SOFT_TEACHER.BURN_IN_ITERS 50
"""
import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling tools below

import plot_metrics  # noqa: E402
import visualize_pseudo_labels  # noqa: E402

import soft_teacher  # noqa: E402,F401  (registers the shapes set and the model)
from soft_teacher.engine import ConfigError, SoftTeacherTrainer, load_config, unwrap_model  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "shapes", "soft_teacher_demo.yaml")
STEPS = 4
PICTURE_COLUMNS = 2


def announce(step: int, text: str) -> None:
    print(f"\n[{step}/{STEPS}] {text}", flush=True)


def prepare_datasets(cfg) -> Dict[str, int]:
    """Load (and so generate, on first use) every dataset the config names; ``{name: images}``."""
    names = tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TRAIN_UNLABELED) + tuple(cfg.DATASETS.TEST)
    return {name: len(DatasetCatalog.get(name)) for name in dict.fromkeys(names)}


def box_ap_by_model(results: Optional[Dict]) -> Dict[str, Dict[str, float]]:
    """``{model: {"AP": ..., "AP50": ..., ...}}`` from the trainer's last evaluation.

    A teacher-student run nests COCOEvaluator's results under "teacher" / "student"; a plain
    detector's results are reported under "model". NaN figures (no object of that size) become None.
    """
    if not results:
        return {}
    nested = {name: value for name, value in results.items() if isinstance(value, dict) and "bbox" in value}
    per_model = nested if nested else {"model": results}
    return {
        name: {key: (None if math.isnan(value) else round(float(value), 2)) for key, value in res["bbox"].items()}
        for name, res in per_model.items()
        if "bbox" in res
    }


def grid_picture(paths: Sequence[str], output_png: str, columns: int = PICTURE_COLUMNS, scale: int = 2) -> None:
    """Tile the PNGs at ``paths`` (row-major, white padding) into one picture, enlarged ``scale`` times."""
    images = [cv2.imread(path) for path in paths]
    if not images:
        raise ValueError("No pictures to tile.")
    cell_h, cell_w = max(im.shape[0] for im in images), max(im.shape[1] for im in images)
    rows = -(-len(images) // columns)
    grid = np.full((rows * cell_h, min(columns, len(images)) * cell_w, 3), 255, dtype=np.uint8)
    for index, image in enumerate(images):
        y, x = (index // columns) * cell_h, (index % columns) * cell_w
        grid[y:y + image.shape[0], x:x + image.shape[1]] = image
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    if not cv2.imwrite(output_png, grid):
        raise OSError(f"Could not write {output_png}; check that its folder is writable.")


def draw_teacher_pseudo_labels(model, cfg, output_dir: str, num_pictures: int, seed: int) -> Optional[str]:
    """Draw the teacher's pseudo labels on the first unlabeled images into ``output_dir/pseudo_labels.png``.

    Returns the path, or None when the config has no unlabeled set (a supervised run).
    """
    if not cfg.DATASETS.TRAIN_UNLABELED:
        return None
    dataset_dicts = DatasetCatalog.get(cfg.DATASETS.TRAIN_UNLABELED[0])[:num_pictures]
    seed_all_rng(seed)
    model.eval()
    with torch.no_grad():
        pictures = visualize_pseudo_labels.draw_pseudo_labels(
            model, cfg, dataset_dicts, os.path.join(output_dir, "pseudo_labels")
        )
    path = os.path.join(output_dir, "pseudo_labels.png")
    grid_picture([picture.path for picture in pictures], path)
    return path


def format_ap(figures: Dict[str, Optional[float]]) -> str:
    return "  ".join(f"{key} {'n/a' if figures.get(key) is None else f'{figures[key]:.1f}'}"
                     for key in ("AP", "AP50", "AP75", "APs", "APm"))


def summary_lines(results: Dict) -> List[str]:
    threads = results["torch_threads"]
    lines = [f"Demo finished in {results['seconds']['total'] / 60:.1f} min "
             f"({threads} CPU thread{'s' if threads > 1 else ''}, device {results['device']})."]
    for name, figures in results["box_ap"].items():
        lines.append(f"  {name:8s} box {format_ap(figures)}  (on {', '.join(results['test_sets'])})")
    for label, key in (("pseudo labels", "pseudo_labels_png"), ("training curves", "training_curves_png"),
                       ("all figures", "results_json"), ("log, metrics, model", "output_dir")):
        if results.get(key):
            lines.append(f"  {label + ':':20s} {results[key]}")
    if not results.get("pseudo_labels_png"):
        lines.append("  (no pseudo-label picture: the config has no unlabeled set)")
    return lines


def run_demo(config_file: str, output_dir: str, opts: Sequence[str] = (), num_pictures: int = 4,
             threads: int = 1) -> Dict:
    """Run the four steps with ``threads`` CPU threads; return what ``results.json`` holds (AP, paths, seconds)."""
    start = time.perf_counter()
    torch.set_num_threads(threads)
    seconds = {}
    cfg = load_config(config_file, list(opts) + ["OUTPUT_DIR", output_dir])
    cfg.freeze()
    default_setup(cfg, argparse.Namespace(config_file=config_file, opts=list(opts), eval_only=False))
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="soft_teacher")

    announce(1, "Preparing the shapes data (generated on first use, then re-used)")
    tic = time.perf_counter()
    sizes = prepare_datasets(cfg)
    print("    " + ", ".join(f"{name}: {count} images" for name, count in sizes.items()), flush=True)
    seconds["data"] = time.perf_counter() - tic

    announce(2, f"Training {cfg.MODEL.META_ARCHITECTURE} for {cfg.SOLVER.MAX_ITER} iterations, then evaluating on "
                f"{', '.join(cfg.DATASETS.TEST)}")
    burn_in = cfg.SOFT_TEACHER.BURN_IN_ITERS if cfg.DATASETS.TRAIN_UNLABELED else 0
    if 0 < burn_in < cfg.SOLVER.MAX_ITER:
        print(f"    The log's ETA assumes the current speed: the semi-supervised iterations after the burn-in "
              f"({burn_in}) also run the teacher and {cfg.SOLVER.IMS_PER_BATCH_UNLABELED} more images, and are "
              "several times slower.", flush=True)
    tic = time.perf_counter()
    trainer = SoftTeacherTrainer(cfg)
    trainer.resume_or_load(resume=False)
    eval_results = trainer.train()
    seconds["train_and_evaluate"] = time.perf_counter() - tic

    announce(3, "Drawing the teacher's pseudo labels on unlabeled images")
    tic = time.perf_counter()
    pseudo_png = draw_teacher_pseudo_labels(unwrap_model(trainer.model), cfg, output_dir, num_pictures, cfg.SEED)
    seconds["pseudo_labels"] = time.perf_counter() - tic

    announce(4, "Plotting the training curves")
    tic = time.perf_counter()
    curves_png = os.path.join(output_dir, "training_curves.png")
    plot_metrics.plot_metrics([output_dir], curves_png, labels=[os.path.basename(os.path.normpath(output_dir))])
    seconds["curves"] = time.perf_counter() - tic
    seconds["total"] = time.perf_counter() - start

    results = {
        "config_file": config_file,
        "opts": list(opts),
        "device": cfg.MODEL.DEVICE,
        "torch_threads": torch.get_num_threads(),
        "max_iter": cfg.SOLVER.MAX_ITER,
        "datasets": sizes,
        "test_sets": list(cfg.DATASETS.TEST),
        "box_ap": box_ap_by_model(eval_results),
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
        "output_dir": output_dir,
        "pseudo_labels_png": pseudo_png,
        "training_curves_png": curves_png,
        "results_json": os.path.join(output_dir, "results.json"),
    }
    with open(results["results_json"], "w") as f:
        json.dump(results, f, indent=2)
    return results


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/demo", help="output folder (default: output/demo)")
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE",
                        help="config to train (default: configs/shapes/soft_teacher_demo.yaml)")
    parser.add_argument("--num-pictures", type=int, default=4, help="unlabeled images in pseudo_labels.png")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for the model (default 1: on the demo's small images a second thread "
                             "slowed a 2-core machine down)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        results = run_demo(args.config_file, args.output, args.opts, args.num_pictures, args.threads)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n" + "\n".join(summary_lines(results)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
