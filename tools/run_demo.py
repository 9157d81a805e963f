#!/usr/bin/env python
"""The built-in demonstration (``make demo``): Soft Teacher against its supervised twin on the synthetic shapes set.

Two arms, each one ``train_net.py`` process, trained on the CPU one after the other, each with all the
torch threads (``--parallel 2``: side by side, sharing them):

- the supervised twin (``configs/shapes/supervised_demo.yaml``: 5% of shapes_train labeled), from
  scratch, into ``OUTPUT/supervised``;
- Soft Teacher (``configs/shapes/soft_teacher_demo.yaml``: the same labeled images, the rest of
  shapes_train unlabeled), into ``OUTPUT/soft_teacher``. It branches from the twin at iteration
  B = ``SOFT_TEACHER.BURN_IN_ITERS``: it starts from a copy of the twin's checkpoint ``model_{B-1}``
  (weights, optimizer, LR schedule), so the two arms share their first B iterations and differ only in
  what Soft Teacher adds after them (``tools/branch_runs.py``).

Steps, each announced with its number:

1. generate the shapes set under ``$DETECTRON2_DATASETS/shapes`` (default ``./datasets``),
   with a progress bar; a set generated before with the same settings is re-used;
2. train both arms, printing each one's progress and ETA every minute; each evaluates on
   ``shapes_val`` at the end (COCO box AP; Soft Teacher: its teacher and its student);
3. draw the Soft Teacher teacher's pseudo labels on unlabeled images (teacher view and student
   view side by side; see ``tools/visualize_pseudo_labels.py``) into ``pseudo_labels.png``;
4. plot both arms' training curves from their ``metrics.json`` into ``training_curves.png``: the
   losses, the pseudo-label statistics, and the box AP of the supervised twin, the teacher and the
   student against the iteration on the same axes.

It ends by printing the box AP of the teacher, the student and the supervised twin, the differences
teacher - supervised and student - supervised, and the pseudo labels' precision, recall and boxes per
image at the classification threshold (``SOFT_TEACHER.CLS_PSEUDO_THRESH``), each the mean over the last
100 iterations; ``results.json`` holds them with the time each step took. Each arm's folder is its
``OUTPUT_DIR`` (``stdout.log``, ``log.txt``, ``metrics.json``, ``model_final.pth``). An interrupted demo
resumes where it stopped: a finished arm is read, not trained again (delete the output folder to start over).

Usage::

    python tools/run_demo.py --output output/demo
    python tools/run_demo.py --output output/demo_quick SOLVER.MAX_ITER 300 SOLVER.STEPS "(250,)" \\
        SOFT_TEACHER.BURN_IN_ITERS 200 SOLVER.CHECKPOINT_PERIOD 200

Config overrides after the flags go to both arms. The demo's steps are :func:`run_demo`, which returns what
``results.json`` holds; :func:`summary_lines` prints it.
"""
import argparse
import functools
import json
import math
import os
import signal
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence

import torch

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.data import DatasetCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from soft_teacher.engine import ConfigError, is_semi_supervised, load_config, load_model
from soft_teacher.visualize import draw_pseudo_labels, grid_picture

from branch_runs import (
    CHECKOUT,
    PSEUDO_WINDOW,
    Run,
    RunProcess,
    Scheduler,
    branch_problems,
    checkpoint_name,
    final_evaluation,
    pseudo_label_stats,
)
from plot_metrics import plot_metrics

__all__ = ["ARM_LABELS", "DEFAULT_CONFIG", "DEFAULT_SUPERVISED_CONFIG", "DemoError", "ap_differences",
           "box_ap_of_arms", "plan_arms", "prepare_datasets", "pseudo_label_summary", "run_demo", "summary_lines"]

CONFIG_DIR = os.path.join(CHECKOUT, "configs", "shapes")
DEFAULT_CONFIG = os.path.join(CONFIG_DIR, "soft_teacher_demo.yaml")
DEFAULT_SUPERVISED_CONFIG = os.path.join(CONFIG_DIR, "supervised_demo.yaml")
STEPS = 4
PRINTED_FIELDS = ("AP", "AP50", "AP75", "APs", "APm")
ARM_LABELS = {"supervised": "supervised twin", "soft_teacher": "Soft Teacher"}
# results.json's pseudo_labels: name -> the metrics.json key averaged over the last PSEUDO_WINDOW iterations.
PSEUDO_KEYS = {"precision": "pseudo/precision", "recall": "pseudo/recall",
               "boxes_per_image": "pseudo/boxes_per_image_cls"}


class DemoError(RuntimeError):
    """An arm did not finish; the message names the log to read."""


def announce(step: int, text: str) -> None:
    print(f"\n[{step}/{STEPS}] {text}", flush=True)


def plan_arms(config_file: str = DEFAULT_CONFIG, supervised_config_file: str = DEFAULT_SUPERVISED_CONFIG) -> List[Run]:
    """The supervised twin, then the Soft Teacher run that branches from it."""
    supervised = Run("supervised", supervised_config_file)
    return [supervised, Run("soft_teacher", config_file, twin=supervised)]


def prepare_datasets(cfgs: Iterable) -> Dict[str, int]:
    """Load (and so generate, on first use) every dataset the configs train or test on; ``{name: images}``."""
    names = []
    for cfg in cfgs:
        unlabeled = tuple(cfg.DATASETS.TRAIN_UNLABELED) if is_semi_supervised(cfg) else ()
        names += list(cfg.DATASETS.TRAIN) + list(unlabeled) + list(cfg.DATASETS.TEST)
    return {name: len(DatasetCatalog.get(name)) for name in dict.fromkeys(names)}


def coco_fields(fields: Dict[str, float]) -> Dict[str, Optional[float]]:
    """COCO's box figures rounded to 2 decimals; NaN (no object of that size) becomes None."""
    return {key: None if math.isnan(value) else round(float(value), 2) for key, value in fields.items()}


def box_ap_of_arms(supervised: Dict[str, dict], soft: Dict[str, dict]) -> Dict[str, Dict[str, Optional[float]]]:
    """``{"teacher"|"student"|"supervised": {"AP": ..., ...}}`` from the arms' final evaluations
    (:func:`branch_runs.final_evaluation`)."""
    box_ap = {model: coco_fields(fields) for model, fields in soft.items() if model in ("teacher", "student")}
    box_ap["supervised"] = coco_fields(supervised["model"])
    return box_ap


def ap_differences(box_ap: Dict[str, Dict[str, Optional[float]]]) -> Dict[str, Optional[float]]:
    """``{"teacher - supervised": AP difference, "student - supervised": ...}``; None where an AP is missing."""
    reference = (box_ap.get("supervised") or {}).get("AP")
    differences = {}
    for model in ("teacher", "student"):
        ap = (box_ap.get(model) or {}).get("AP")
        differences[f"{model} - supervised"] = None if ap is None or reference is None else round(ap - reference, 2)
    return differences


def pseudo_label_summary(stats: Dict[str, float]) -> Dict[str, Optional[float]]:
    """``{"precision", "recall", "boxes_per_image"}`` from :func:`pseudo_label_stats` (None: never logged)."""
    return {name: None if key not in stats else round(stats[key], 4) for name, key in PSEUDO_KEYS.items()}


def arm_error(run: Run, folder: str, status: Dict[str, dict], output_dir: str) -> str:
    """Why an arm has no final evaluation, and which log says more."""
    state = status.get(run.name, {}).get("state", "not trained")
    log_run = run.twin if run.twin is not None and state.startswith("not started") else run
    log = os.path.join(output_dir, log_run.name, "stdout.log")
    return (f"the {ARM_LABELS.get(run.name, run.name)} arm ({folder}) has no final evaluation: {state}. "
            f"Read {log} (the trainer's log.txt is beside it).")


def draw_teacher_pseudo_labels(model, cfg, output_dir: str, num_pictures: int, seed: int) -> str:
    """Draw the teacher's pseudo labels on the first unlabeled images into ``output_dir/pseudo_labels.png``."""
    dataset_dicts = DatasetCatalog.get(cfg.DATASETS.TRAIN_UNLABELED[0])[:num_pictures]
    seed_all_rng(seed)
    model.eval()
    with torch.no_grad():
        pictures = draw_pseudo_labels(model, cfg, dataset_dicts, os.path.join(output_dir, "pseudo_labels"))
    path = os.path.join(output_dir, "pseudo_labels.png")
    grid_picture([picture.path for picture in pictures], path)
    return path


def _figure(value: Optional[float], digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_ap(figures: Dict[str, Optional[float]]) -> str:
    return "  ".join(f"{key} {_figure(figures.get(key))}" for key in PRINTED_FIELDS)


def arrangement(parallel: int) -> str:
    """How the two arms' processes share the machine, in words."""
    return "one after the other" if parallel == 1 else "side by side"


def summary_lines(results: Dict) -> List[str]:
    threads, how = results["torch_threads"], arrangement(results["parallel"])
    lines = [f"Demo finished in {results['seconds']['total'] / 60:.1f} min (two train_net.py processes {how}, "
             f"{threads} CPU thread{'s' if threads > 1 else ''} each, device {results['device']}).",
             f"Box AP on {', '.join(results['test_sets'])} after {results['max_iter']} iterations (Soft Teacher "
             f"branched from the supervised twin at iteration {results['burn_in_iters']}):"]
    for name, figures in results["box_ap"].items():
        lines.append(f"  {name:10s} box {format_ap(figures)}")
    lines.append("  " + "    ".join(f"{name}: {'n/a' if value is None else f'{value:+.1f}'} AP"
                                    for name, value in results["ap_difference"].items()))
    pseudo = results["pseudo_labels"]
    lines.append(f"Pseudo labels (score >= {results['cls_pseudo_thresh']}, mean over the last {PSEUDO_WINDOW} "
                 f"iterations): precision {_figure(pseudo['precision'], 2)}, recall {_figure(pseudo['recall'], 2)}, "
                 f"{_figure(pseudo['boxes_per_image'], 2)} boxes per image")
    for label, path in (("pseudo labels", results["pseudo_labels_png"]),
                        ("training curves", results["training_curves_png"]),
                        ("all figures", results["results_json"])):
        lines.append(f"  {label + ':':20s} {path}")
    for name, run in results["runs"].items():
        lines.append(f"  {ARM_LABELS[name] + ':':20s} {run['output_dir']} (stdout.log, log.txt, metrics.json, "
                     "model_final.pth)")
    return lines


def run_demo(output_dir: str, opts: Sequence[str] = (), num_pictures: int = 4, threads: Optional[int] = None,
             config_file: str = DEFAULT_CONFIG, supervised_config_file: str = DEFAULT_SUPERVISED_CONFIG,
             parallel: int = 1) -> Dict:
    """Run the four steps, ``parallel`` arms at once, each arm's process with ``threads`` CPU threads (default:
    this process's torch threads shared among them); return what ``results.json`` holds.

    One arm at a time with all the threads is the fastest on a small CPU: the twin's first B iterations
    cannot overlap anything, and the branch runs alone once the twin is done.

    Raises:
        ConfigError: a config does not load with ``opts``, or the Soft Teacher arm cannot branch from its twin.
        DemoError: an arm did not finish (the message names the log to read).
    """
    start = time.perf_counter()
    if parallel < 1:
        raise ConfigError(f"the demo trains at least one arm at a time, not {parallel}.")
    if threads is not None and threads < 1:
        raise ConfigError(f"each arm needs at least one CPU thread, not {threads}.")
    parallel = min(parallel, len(ARM_LABELS))
    threads = threads or max(1, torch.get_num_threads() // parallel)
    torch.set_num_threads(threads)
    seconds = {}
    supervised, soft = runs = plan_arms(config_file, supervised_config_file)
    cfgs = {run.name: run.config(opts) for run in runs}
    soft_cfg = cfgs[soft.name]
    if not is_semi_supervised(soft_cfg):
        raise ConfigError(f"{config_file} trains {soft_cfg.MODEL.META_ARCHITECTURE}; the demo's --config-file "
                          "must be a SoftTeacher config.")
    problems = branch_problems(runs, opts)
    if problems:
        raise ConfigError("the Soft Teacher arm cannot branch from its supervised twin:\n  " + "\n  ".join(problems))
    folders = {run.name: os.path.join(output_dir, run.name) for run in runs}
    setup_logger(name="soft_teacher")

    announce(1, "Preparing the shapes data (generated on first use, then re-used)")
    tic = time.perf_counter()
    sizes = prepare_datasets(cfgs.values())
    print("    " + ", ".join(f"{name}: {count} images" for name, count in sizes.items()), flush=True)
    seconds["data"] = time.perf_counter() - tic

    burn_in, max_iter = soft_cfg.SOFT_TEACHER.BURN_IN_ITERS, soft_cfg.SOLVER.MAX_ITER
    announce(2, f"Training the supervised twin from scratch and Soft Teacher from its iteration-{burn_in} "
                f"checkpoint ({arrangement(parallel)}, {threads} CPU thread{'s' if threads > 1 else ''} each) to "
                f"{max_iter} iterations; then each evaluates on {', '.join(soft_cfg.DATASETS.TEST)}")
    for run in runs:
        print(f"    {ARM_LABELS[run.name]}: {folders[run.name]} (its log: stdout.log)", flush=True)
    print(f"    Progress and ETA every minute. Soft Teacher starts from the twin's checkpoint "
          f"{checkpoint_name(burn_in - 1)}; its iterations also run the teacher on "
          f"{soft_cfg.SOLVER.IMS_PER_BATCH_UNLABELED} unlabeled images and are several times slower.", flush=True)
    tic = time.perf_counter()
    scheduler = Scheduler(runs, output_dir, opts, parallel=parallel,
                          launch=functools.partial(RunProcess, threads=threads))
    for name in scheduler.status:
        print(f"    {ARM_LABELS[name]}: finished earlier, read from {folders[name]} (delete it to train again)",
              flush=True)
    status = scheduler.run()
    evaluations = {run.name: final_evaluation(folders[run.name], cfgs[run.name].SOLVER.MAX_ITER) for run in runs}
    missing = [arm_error(run, folders[run.name], status, output_dir) for run in runs if evaluations[run.name] is None]
    if missing:
        raise DemoError("\n".join(missing))
    seconds["train_and_evaluate"] = time.perf_counter() - tic

    announce(3, "Drawing the Soft Teacher teacher's pseudo labels on unlabeled images")
    tic = time.perf_counter()
    draw_cfg = load_config(soft.config_file, list(opts) + ["OUTPUT_DIR", folders[soft.name]])
    draw_cfg.freeze()
    model = load_model(draw_cfg, os.path.join(folders[soft.name], "model_final.pth"))
    pseudo_png = draw_teacher_pseudo_labels(model, draw_cfg, output_dir, num_pictures, draw_cfg.SEED)
    seconds["pseudo_labels"] = time.perf_counter() - tic

    announce(4, "Plotting the training curves of both arms")
    tic = time.perf_counter()
    curves_png = os.path.join(output_dir, "training_curves.png")
    plot_metrics([folders[supervised.name], folders[soft.name]], curves_png,
                 labels=[ARM_LABELS[supervised.name], ARM_LABELS[soft.name]])
    seconds["curves"] = time.perf_counter() - tic
    seconds["total"] = time.perf_counter() - start

    box_ap = box_ap_of_arms(evaluations[supervised.name], evaluations[soft.name])
    results = {
        "config_files": {run.name: run.config_file for run in runs},
        "opts": list(opts),
        "device": soft_cfg.MODEL.DEVICE,
        "torch_threads": threads,
        "parallel": parallel,
        "max_iter": max_iter,
        "burn_in_iters": burn_in,
        "datasets": sizes,
        "test_sets": list(soft_cfg.DATASETS.TEST),
        "box_ap": box_ap,
        "ap_difference": ap_differences(box_ap),
        "pseudo_labels": pseudo_label_summary(pseudo_label_stats(folders[soft.name])),
        "cls_pseudo_thresh": soft_cfg.SOFT_TEACHER.CLS_PSEUDO_THRESH,
        "runs": {run.name: {"output_dir": folders[run.name], **status.get(run.name, {})} for run in runs},
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
        "output_dir": output_dir,
        "pseudo_labels_png": pseudo_png,
        "training_curves_png": curves_png,
        "results_json": os.path.join(output_dir, "results.json"),
    }
    with open(results["results_json"], "w") as f:
        json.dump(results, f, indent=2)
    return results

# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/demo", help="output folder (default: output/demo)")
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE",
                        help="the Soft Teacher arm's config (default: configs/shapes/soft_teacher_demo.yaml)")
    parser.add_argument("--supervised-config-file", default=DEFAULT_SUPERVISED_CONFIG, metavar="FILE",
                        help="the supervised twin's config (default: configs/shapes/supervised_demo.yaml)")
    parser.add_argument("--num-pictures", type=int, default=4, help="unlabeled images in pseudo_labels.png")
    parser.add_argument("--parallel", type=int, default=1,
                        help="arms trained at once, 1 or 2 (default 1: one after the other, which was the "
                             "fastest on 2 cores, BENCHMARKS.md)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of each arm's process (default: torch's, shared among the arms at once)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for both arms: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # A terminated demo stops its training processes (Scheduler.run's cleanup) instead of leaving them orphaned.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        results = run_demo(args.output, args.opts, args.num_pictures, args.threads, args.config_file,
                           args.supervised_config_file, args.parallel)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("\n" + "\n".join(summary_lines(results)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
