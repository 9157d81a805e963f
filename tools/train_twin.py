#!/usr/bin/env python
"""Train a Soft Teacher config beside its supervised twin, and see whether the unlabeled images helped.

For any Soft Teacher config, two arms, each a ``train_net.py`` run with the config's model, schedule and
labeled images:

- ``supervised``: the config as a plain detector (``MODEL.META_ARCHITECTURE GeneralizedRCNN``, no unlabeled
  set), from scratch, into ``OUTPUT/supervised``; it saves a checkpoint at the branch point;
- ``soft_teacher``: the config itself, into ``OUTPUT/soft_teacher``. With B = ``SOFT_TEACHER.BURN_IN_ITERS``
  > 0 it does not train the burn-in again: it starts from a copy of the twin's checkpoint ``model_{B-1}``
  (weights, optimizer, LR schedule), so the two arms share their first B iterations and differ only in what
  Soft Teacher adds after them (``tools/branch_runs.py``). With B = 0 both arms train from scratch.

Steps, each announced with its number:

1. load every dataset the config trains or tests on (the built-in shapes set is generated on first use);
2. train the arms (one after the other unless ``--parallel 2``), printing each one's progress and ETA
   every minute; each evaluates on ``DATASETS.TEST`` at the end (Soft Teacher: its teacher and its student);
3. draw the teacher's pseudo labels on ``--pictures`` unlabeled images (teacher view and student view side
   by side, as ``tools/visualize_pseudo_labels.py`` does) into ``pseudo_labels.png``;
4. plot both arms' training curves into ``training_curves.png`` (``tools/plot_metrics.py``).

It ends by printing, per test set, the box AP of the teacher, the student and the supervised twin and the
differences, and the pseudo labels' health over the last 100 iterations: boxes per image at the
classification threshold against the labeled images' boxes per image, how far their class shares are from
the labeled set's, the teacher's mean score, and precision and recall where the unlabeled images carry
hidden annotations (the built-in splits do). ``results.json`` holds them with the time each step took. An
interrupted run resumes where it stopped: a finished arm is read, not trained again, and an unfinished one
resumes from its last checkpoint (delete the output folder to start over).

Launch options (``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``) go to each arm's
``train_net.py``. With several machines, run the same command on each, with ``--output`` on a folder every
machine shares; the machine of rank 0 prints the results. The arms train one after the other by default,
each on all the GPUs (or CPU threads) it is given.

Usage::

    python tools/train_twin.py --config-file configs/shapes/soft_teacher_demo.yaml --output output/demo
    python tools/train_twin.py --config-file configs/soft_teacher_small_data.yaml --num-gpus 1 \
        --output output/parts_twin DATASETS.TRAIN "('parts_train',)" ...
    python tools/train_twin.py --config-file my_soft_teacher.yaml --num-gpus 8 --num-machines 2 \
        --machine-rank 0 --dist-url tcp://10.0.0.1:29500 --output /shared/parts_twin

Config overrides after the flags go to both arms. ``make demo`` is the first example.
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

from soft_teacher.engine import ConfigError, SoftTeacherTrainer, is_semi_supervised, load_config, load_model
from soft_teacher.visualize import draw_pseudo_labels, grid_picture

from branch_runs import (
    PSEUDO_WINDOW,
    Run,
    RunProcess,
    Scheduler,
    branch_problems,
    final_evaluation,
    pseudo_label_stats,
    test_set_keys,
)
from plot_metrics import plot_metrics

__all__ = ["ARM_LABELS", "TwinError", "ap_differences", "box_ap_of_arms", "plan_arms", "prepare_datasets",
           "pseudo_label_summary", "train_twin", "summary_lines", "twin_opts"]

STEPS = 4
PRINTED_FIELDS = ("AP", "AP50", "AP75", "APs", "APm")
ARM_LABELS = {"supervised": "supervised twin", "soft_teacher": "Soft Teacher"}
# results.json's pseudo_labels: name -> the metrics.json key averaged over the last PSEUDO_WINDOW iterations.
PSEUDO_KEYS = {
    "boxes_per_image": "pseudo/boxes_per_image_cls",
    "labeled_boxes_per_image": "pseudo/boxes_per_image_labeled",
    "class_share_distance": "pseudo/class_share_distance",
    "class_share_max_ratio": "pseudo/class_share_max_ratio",
    "teacher_score_mean": "pseudo/teacher_score_mean",
    "precision": "pseudo/precision",
    "recall": "pseudo/recall",
    "wrong_class_share": "pseudo/wrong_class_share",
}
LAUNCH_OPTIONS = ("num_gpus", "num_machines", "machine_rank", "dist_url")


class TwinError(RuntimeError):
    """An arm did not finish; the message names the log to read."""


def announce(step: int, text: str) -> None:
    print(f"\n[{step}/{STEPS}] {text}", flush=True)


def twin_opts(cfg) -> List[str]:
    """What makes a Soft Teacher config its supervised twin: a plain detector on the labeled set alone, saving a
    checkpoint at the branch point ``SOFT_TEACHER.BURN_IN_ITERS`` (if any)."""
    opts = ["MODEL.META_ARCHITECTURE", "GeneralizedRCNN", "DATASETS.TRAIN_UNLABELED", "()"]
    burn_in = cfg.SOFT_TEACHER.BURN_IN_ITERS
    return opts + (["SOLVER.CHECKPOINT_PERIOD", str(burn_in)] if burn_in > 0 else [])


def plan_arms(config_file: str, opts: Sequence[str] = ()) -> List[Run]:
    """The supervised twin, then the Soft Teacher run (branching from it when the burn-in is not empty); each
    run's opts are ``opts``, then (for the twin) :func:`twin_opts`.

    Raises:
        ConfigError: the config does not load, trains no Soft Teacher model or tests on nothing.
    """
    cfg = load_config(config_file, opts)
    if not is_semi_supervised(cfg):
        raise ConfigError(f"{config_file} trains {cfg.MODEL.META_ARCHITECTURE}; give a config with "
                          "MODEL.META_ARCHITECTURE SoftTeacher (its twin is derived from it).")
    if not cfg.DATASETS.TEST:
        raise ConfigError(f"{config_file} has no DATASETS.TEST, so the arms could not be compared: name the "
                          "annotated images to evaluate, e.g. DATASETS.TEST \"('my_val',)\".")
    supervised = Run("supervised", config_file, tuple(opts) + tuple(twin_opts(cfg)))
    branches = cfg.SOFT_TEACHER.BURN_IN_ITERS > 0
    return [supervised, Run("soft_teacher", config_file, tuple(opts), supervised if branches else None)]


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
    """``{"teacher"|"student"|"supervised": {"AP": ..., ...}}`` on one test set from the arms' final
    evaluations (:func:`branch_runs.final_evaluation`)."""
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
    """:data:`PSEUDO_KEYS` from :func:`pseudo_label_stats` (None: never logged)."""
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


def pseudo_label_line(pseudo: Dict[str, Optional[float]], cls_thresh: float) -> str:
    """The printed health of the pseudo labels (what :func:`pseudo_label_summary` has)."""
    parts = [f"{_figure(pseudo['boxes_per_image'], 2)} per image"
             + (f" (the labeled images have {_figure(pseudo['labeled_boxes_per_image'], 2)})"
                if pseudo["labeled_boxes_per_image"] is not None else "")]
    if pseudo["class_share_distance"] is not None:
        ratio = pseudo["class_share_max_ratio"]
        parts.append(f"class shares {_figure(pseudo['class_share_distance'], 2)} from the labeled set's"
                     + (f" (largest ratio {_figure(ratio, 1)}x)" if ratio is not None else ""))
    parts.append(f"teacher score {_figure(pseudo['teacher_score_mean'], 2)}")
    if pseudo["precision"] is not None or pseudo["recall"] is not None:  # only with hidden annotations
        parts.append(f"precision {_figure(pseudo['precision'], 2)}, recall {_figure(pseudo['recall'], 2)} against "
                     "the hidden annotations")
    return (f"Pseudo labels (score >= {cls_thresh}, mean over the last {PSEUDO_WINDOW} iterations): "
            + "; ".join(parts))


def summary_lines(results: Dict) -> List[str]:
    threads, how = results["torch_threads"], arrangement(results["parallel"])
    lines = [f"Finished in {results['seconds']['total'] / 60:.1f} min (two train_net.py runs {how}, device "
             f"{results['device']}" + (f", {threads} CPU thread{'s' if threads > 1 else ''} each" if
                                       results["device"] == "cpu" else "") + ")."]
    branch = (f"Soft Teacher branched from the supervised twin at iteration {results['burn_in_iters']}"
              if results["burn_in_iters"] else "both arms from scratch")
    lines.append(f"Box AP after {results['max_iter']} iterations ({branch}):")
    for dataset, box_ap in results["box_ap"].items():
        lines.append(f"  {dataset}:")
        for name, figures in box_ap.items():
            lines.append(f"    {name:10s} box {format_ap(figures)}")
        lines.append("    " + "    ".join(f"{name}: {'n/a' if value is None else f'{value:+.1f}'} AP"
                                          for name, value in results["ap_difference"][dataset].items()))
    lines.append(pseudo_label_line(results["pseudo_labels"], results["cls_pseudo_thresh"]))
    lines.append("One run's difference of a point or two can be chance: train again with another SEED (a config "
                 "override) to see the spread before concluding.")
    for label, path in (("pseudo labels", results["pseudo_labels_png"]),
                        ("training curves", results["training_curves_png"]),
                        ("all figures", results["results_json"])):
        if path:
            lines.append(f"  {label + ':':20s} {path}")
    for name, run in results["runs"].items():
        lines.append(f"  {ARM_LABELS[name] + ':':20s} {run['output_dir']} (stdout.log, log.txt, metrics.json, "
                     "model_final.pth)")
    return lines


def launch_arguments(num_gpus: int = 1, num_machines: int = 1, machine_rank: int = 0,
                     dist_url: str = "auto") -> List[str]:
    """The ``train_net.py`` launch options of each arm (none at their defaults: one process).

    Several processes always get ``--dist-url``: on one machine its default ``auto`` picks a free port, where
    ``train_net.py``'s own default is a fixed port per user that a second job of the same user would find taken.
    """
    args = []
    if num_gpus != 1:
        args += ["--num-gpus", str(num_gpus)]
    if num_machines != 1:
        args += ["--num-machines", str(num_machines), "--machine-rank", str(machine_rank)]
    if num_gpus * num_machines > 1:
        args += ["--dist-url", dist_url]
    return args


def train_twin(config_file: str, output_dir: str, opts: Sequence[str] = (), num_pictures: int = 4,
               threads: Optional[int] = None, parallel: int = 1, num_gpus: int = 1, num_machines: int = 1,
               machine_rank: int = 0, dist_url: str = "auto") -> Optional[Dict]:
    """Run the four steps, ``parallel`` arms at once, each arm's process with ``threads`` CPU threads (default:
    this process's torch threads shared among them) and the launch options; return what ``results.json`` holds
    (None on a machine of rank > 0, which only trains).

    One arm at a time with all the threads is the fastest on a small CPU: the twin's first B iterations
    cannot overlap anything, and the branch runs alone once the twin is done.

    Raises:
        ConfigError: the config does not load with ``opts``, trains no Soft Teacher model, or cannot branch
            from its twin.
        TwinError: an arm did not finish (the message names the log to read).
    """
    start = time.perf_counter()
    if parallel < 1:
        raise ConfigError(f"--parallel: at least one arm at a time, not {parallel}.")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: each arm needs at least one CPU thread, not {threads}.")
    world_size = num_gpus * num_machines
    if parallel > 1 and world_size > 1:
        raise ConfigError(f"--parallel {parallel} would train both arms at once on the same GPUs; with "
                          f"{world_size} processes per arm, train them one after the other (--parallel 1).")
    parallel = min(parallel, len(ARM_LABELS))
    threads = threads or max(1, torch.get_num_threads() // parallel)
    torch.set_num_threads(threads)
    seconds = {}
    supervised, soft = runs = plan_arms(config_file, opts)
    cfgs = {run.name: SoftTeacherTrainer.auto_scale_workers(run.config(), world_size) for run in runs}
    soft_cfg = cfgs[soft.name]
    problems = branch_problems(runs, (), world_size)
    if problems:
        raise ConfigError("the Soft Teacher arm cannot branch from its supervised twin:\n  " + "\n  ".join(problems))
    folders = {run.name: os.path.join(output_dir, run.name) for run in runs}
    setup_logger(name="soft_teacher")

    announce(1, "Loading the datasets (the built-in shapes set is generated on first use, then re-used)")
    tic = time.perf_counter()
    sizes = prepare_datasets(cfgs.values())
    print("    " + ", ".join(f"{name}: {count} images" for name, count in sizes.items()), flush=True)
    seconds["data"] = time.perf_counter() - tic

    burn_in, max_iter = soft_cfg.SOFT_TEACHER.BURN_IN_ITERS, soft_cfg.SOLVER.MAX_ITER
    start_of_soft = (f"Soft Teacher from its iteration-{burn_in} checkpoint" if soft.twin is not None
                     else "Soft Teacher from scratch")
    announce(2, f"Training the supervised twin from scratch and {start_of_soft} ({arrangement(parallel)}) to "
                f"{max_iter} iterations; then each evaluates on {', '.join(soft_cfg.DATASETS.TEST)}")
    scheduler = Scheduler(runs, output_dir, (), parallel=parallel,
                          launch=functools.partial(RunProcess, threads=threads),
                          launch_args=launch_arguments(num_gpus, num_machines, machine_rank, dist_url),
                          world_size=world_size, machine_rank=machine_rank)
    for run in runs:
        print(f"    {ARM_LABELS[run.name]}: {folders[run.name]} (its log: {scheduler.log_name})", flush=True)
    print(f"    Progress and ETA every minute. Soft Teacher's iterations also run the teacher on "
          f"{soft_cfg.SOLVER.IMS_PER_BATCH_UNLABELED} unlabeled images and are several times slower.", flush=True)
    tic = time.perf_counter()
    for name in scheduler.status:
        print(f"    {ARM_LABELS[name]}: finished earlier, read from {folders[name]} (delete it to train again)",
              flush=True)
    status = scheduler.run()
    if machine_rank > 0:
        unfinished = [f"the {ARM_LABELS[name]} arm: {state['state']}" for name, state in status.items()
                      if state["state"] not in ("trained", "finished earlier")]
        if unfinished:
            raise TwinError(f"on this machine (rank {machine_rank}):\n  " + "\n  ".join(unfinished))
        return None
    test_sets = test_set_keys(soft_cfg.DATASETS.TEST)
    evaluations = {run.name: {dataset: final_evaluation(folders[run.name], cfgs[run.name].SOLVER.MAX_ITER, key)
                              for dataset, key in test_sets.items()} for run in runs}
    missing = [arm_error(run, folders[run.name], status, output_dir) for run in runs
               if None in evaluations[run.name].values()]
    if missing:
        raise TwinError("\n".join(missing))
    seconds["train_and_evaluate"] = time.perf_counter() - tic

    pseudo_png = None
    if num_pictures > 0:
        announce(3, "Drawing the teacher's pseudo labels on unlabeled images")
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

    box_ap = {dataset: box_ap_of_arms(evaluations[supervised.name][dataset], evaluations[soft.name][dataset])
              for dataset in test_sets}
    results = {
        "config_file": config_file,
        "opts": list(opts),
        "device": soft_cfg.MODEL.DEVICE,
        "world_size": world_size,
        "torch_threads": threads,
        "parallel": parallel,
        "max_iter": max_iter,
        "burn_in_iters": burn_in,
        "datasets": sizes,
        "box_ap": box_ap,
        "ap_difference": {dataset: ap_differences(figures) for dataset, figures in box_ap.items()},
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
    parser.add_argument("--config-file", required=True, metavar="FILE", help="a Soft Teacher config")
    parser.add_argument("--output", help="output folder of both arms (default: the config's OUTPUT_DIR)")
    parser.add_argument("--pictures", type=int, default=4,
                        help="unlabeled images in pseudo_labels.png (default 4; 0: no picture)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="arms trained at once after the branch point, 1 or 2 (default 1: one after the other)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of each arm's process (default: torch's, shared among the arms at once)")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine of each arm (train_net.py's)")
    parser.add_argument("--num-machines", type=int, default=1, help="machines of each arm (train_net.py's)")
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's rank (train_net.py's)")
    parser.add_argument("--dist-url", default="auto", help="machine 0's tcp://HOST:PORT (train_net.py's)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for both arms: KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.num_gpus < 1 or args.num_machines < 1 or not 0 <= args.machine_rank < args.num_machines:
        parser.error("--num-gpus and --num-machines must be >= 1 and --machine-rank in [0, --num-machines)")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # A terminated run stops its training processes (Scheduler.run's cleanup) instead of leaving them orphaned.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        output = args.output or load_config(args.config_file, args.opts).OUTPUT_DIR
        results = train_twin(args.config_file, output, args.opts, args.pictures, args.threads, args.parallel,
                             **{name: getattr(args, name) for name in LAUNCH_OPTIONS})
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TwinError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    if results is not None:
        print("\n" + "\n".join(summary_lines(results)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
