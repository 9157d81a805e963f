#!/usr/bin/env python
"""Accuracy benchmark on the synthetic shapes set: how much of the labeled-data gap Soft Teacher closes.

For each (labeled percent p, seed s) -- by default (1, 1), (5, 1), (5, 2) -- it trains a supervised run
``supervised_{p}pct_seed{s}`` and a Soft Teacher run ``soft_teacher_{p}pct_seed{s}``, plus the supervised
ceiling ``supervised_100pct_seed1``; the configs are ``configs/shapes/{supervised,soft_teacher}_R18_FPN_{p}pct.yaml``
with ``SEED s``. Where a percent's configs train another schedule than the 100% config, that percent gets its own
ceiling on its schedule (e.g. ``supervised_100pct_seed1_max_iter3600_steps3000``); ``--no-ceiling`` leaves the
ceilings out, and with them the "supervised 100%" and "gap closed" columns. Each run is one ``train_net.py``
process logging into ``OUTPUT/<run>/``, ``--parallel`` at once (one torch thread each unless OMP_NUM_THREADS is set;
spread over the GPUs when there are several).

A Soft Teacher run branches from its supervised twin: with B = its ``SOFT_TEACHER.BURN_IN_ITERS``, the twin's
checkpoint ``model_{B-1:07d}.pth`` is copied into the Soft Teacher folder and the run resumes from it, so it
continues at iteration B with the twin's weights (student and teacher), optimizer and LR schedule; the two arms
share their first B iterations. A branch waits until that checkpoint is written. Finished runs (final evaluation
in ``metrics.json``) are read, not trained again; interrupted ones resume from their last checkpoint.
The training, branching and reading of the runs is ``tools/branch_runs.py``; :func:`plan_runs` lists the runs
(:class:`BenchmarkRun`; a percent's ceiling: :func:`ceiling_for`), :func:`run_benchmark` trains and reports them.

Writes ``OUTPUT/results.json``, ``OUTPUT/results.md`` (final box AP as mean +- half-range over seeds, the gap
closed, per-seed differences, pseudo-label statistics) and ``OUTPUT/accuracy_curves.png``; with
``--benchmarks-md`` also its section of that file and ``docs/accuracy_curves.png`` beside it.

Usage::

    python tools/benchmark_accuracy.py --output output/benchmark_accuracy --benchmarks-md BENCHMARKS.md
    python tools/benchmark_accuracy.py --percents 1,5,10 --seeds 1,2 --parallel 8 MODEL.DEVICE cuda
    python tools/benchmark_accuracy.py --percents 1,5 --seeds 1=1,2 --seeds 5=1,2,3
    python tools/benchmark_accuracy.py --percents 5 --seeds 1,2,3 --no-ceiling
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.data import DatasetCatalog

from soft_teacher.engine import ConfigError

from benchmark_report import machine_description, machine_line, markdown_table, write_results
from branch_runs import (CHECKOUT, PSEUDO_WINDOW, SHARED_SOLVER_KEYS, Run, Scheduler, _plain, ap_curve,
                         branch_problems, checkpoint_name, final_box_ap, pseudo_label_stats, test_set_keys)
from plot_metrics import LINE_STYLES

__all__ = ["CEILING", "DEFAULT_TABLE", "SEMI_SUPERVISED_PERCENTS", "BenchmarkRun", "ceiling_for", "collect_results",
           "gap_closed", "markdown", "paired_differences", "plan_runs", "plot_accuracy_curves", "run_benchmark",
           "seed_table", "spread", "summarize"]

CONFIG_DIR = os.path.join(CHECKOUT, "configs", "shapes")
DEFAULT_TABLE = ((1, 1), (5, 1), (5, 2))  # (labeled percent, seed) of the supervised / Soft Teacher pairs
CEILING = (100, 1)  # (labeled percent, seed) of the supervised ceiling
SEMI_SUPERVISED_PERCENTS = (1, 5, 10)
FIGURE = "accuracy_curves.png"
HELD_OUT = "shapes_test"  # the test set that chose nothing: reported first, drawn in the figure
# (pseudo/* key, column title) of the pseudo-label table
PSEUDO_COLUMNS = (("pseudo/precision", "precision"), ("pseudo/recall", "recall"),
                  ("pseudo/boxes_per_image_cls", "pseudo boxes / image"),
                  ("pseudo/boxes_per_image_labeled", "labeled boxes / image"),
                  ("pseudo/class_share_distance", "class-share distance"),
                  ("pseudo/class_share_max_ratio", "largest class-share ratio"))
ARM_COLORS = {"supervised": "C0", "teacher": "C1", "student": "C2", "ceiling": "0.5"}


@dataclass(frozen=True)
class BenchmarkRun:
    """One run of the benchmark: its method, labeled percent and seed (and a ceiling's schedule) name its folder
    and config."""

    method: str  # "supervised" or "soft_teacher"
    percent: int
    seed: int
    schedule: Tuple[str, ...] = ()  # SOLVER overrides of a ceiling trained on another percent's schedule

    @property
    def name(self) -> str:
        """``supervised_5pct_seed1``; a ceiling on another schedule adds it (``..._max_iter3600_steps3000``)."""
        suffix = "".join(f"_{key.split('.')[-1].lower()}{re.sub(r'[^0-9a-zA-Z.]+', '-', value).strip('-')}"
                         for key, value in zip(self.schedule[::2], self.schedule[1::2]))
        return f"{self.method}_{self.percent}pct_seed{self.seed}{suffix}"

    @property
    def config_file(self) -> str:
        return os.path.join(CONFIG_DIR, f"{self.method}_R18_FPN_{self.percent}pct.yaml")

    @property
    def twin(self) -> Optional["BenchmarkRun"]:
        """The supervised run a Soft Teacher run branches from."""
        return BenchmarkRun("supervised", self.percent, self.seed) if self.method == "soft_teacher" else None

    @property
    def run(self) -> Run:
        """The run to train: its config with ``SEED``, branching from its twin's."""
        return Run(self.name, self.config_file, ("SEED", str(self.seed)) + self.schedule,
                   self.twin.run if self.twin else None)

    def config(self, opts: Sequence[str] = ()):
        return self.run.config(opts)


def ceiling_for(percent: int, opts: Sequence[str] = ()) -> BenchmarkRun:
    """The 100% run to measure ``percent``'s gap against: :data:`CEILING`, trained on the schedule of
    ``percent``'s supervised config (its :data:`SHARED_SOLVER_KEYS` where they differ from the 100% config's).

    Raises:
        ConfigError: a config does not load with ``opts``, or they differ in a SOLVER section (e.g.
            ``CLIP_GRADIENTS``), which a ceiling cannot take over key by key.
    """
    ceiling = BenchmarkRun("supervised", *CEILING)
    if percent == CEILING[0]:
        return ceiling
    labeled = BenchmarkRun("supervised", percent, CEILING[1]).config(opts).SOLVER
    full = ceiling.config(opts).SOLVER
    schedule = []
    for key in SHARED_SOLVER_KEYS:
        if _plain(labeled[key]) == _plain(full[key]):
            continue
        if isinstance(labeled[key], dict):
            raise ConfigError(f"SOLVER.{key} of {os.path.basename(ceiling.config_file)} and of the {percent}% config "
                              "differ: make them agree, so that the 100% ceiling trains the same schedule.")
        schedule += [f"SOLVER.{key}", str(labeled[key])]
    return BenchmarkRun("supervised", *CEILING, schedule=tuple(schedule))


def seed_table(percents: Sequence[int], seeds: Dict[Optional[int], Sequence[int]]) -> List[Tuple[int, int]]:
    """The (labeled percent, seed) pairs to run: each percent's seeds are ``seeds[percent]``, else
    ``seeds[None]`` (given for every percent), else :data:`DEFAULT_TABLE`'s for it (seed 1 if it has none).

    Raises:
        ValueError: ``seeds`` names a percent that ``percents`` lacks.
    """
    stray = sorted(p for p in seeds if p is not None and p not in percents)
    if stray:
        raise ValueError(f"seeds are given for {stray}, which the percents run ({list(percents)}) do not include")
    return [(p, s) for p in percents
            for s in seeds.get(p) or seeds.get(None) or [s for q, s in DEFAULT_TABLE if q == p] or [1]]


def plan_runs(table: Sequence[Tuple[int, int]], opts: Sequence[str] = (), ceilings: bool = True
              ) -> List[BenchmarkRun]:
    """The supervised runs (with ``ceilings``, the ceilings last, one per schedule), then their Soft Teacher
    branches.

    Raises:
        ConfigError: see :func:`ceiling_for`.
    """
    ceiling_runs = list(dict.fromkeys(ceiling_for(p, opts) for p in sorted({p for p, _ in table}))) if ceilings else []
    supervised = [BenchmarkRun("supervised", p, s) for p, s in table] + ceiling_runs
    return supervised + [BenchmarkRun("soft_teacher", p, s) for p, s in table]


# ----------------------------------------------------------------------------- results


def spread(values: Dict[int, float]) -> Optional[dict]:
    """``{"mean", "half_range", "values": {seed: AP}}`` of per-seed values; None without any."""
    if not values:
        return None
    figures = list(values.values())
    return {"mean": sum(figures) / len(figures), "half_range": (max(figures) - min(figures)) / 2,
            "values": {str(seed): value for seed, value in sorted(values.items())}}


def paired_differences(soft: Dict[int, float], sup: Dict[int, float]) -> Dict[str, float]:
    """``{seed: soft - sup}`` over the seeds both have."""
    return {str(seed): soft[seed] - sup[seed] for seed in sorted(soft) if seed in sup}


def gap_closed(ap_soft: Optional[float], ap_sup: Optional[float], ap_full: Optional[float]) -> Optional[float]:
    """``(AP_soft - AP_sup) / (AP_100 - AP_sup)``; None when a figure is missing or the gap is not positive."""
    if None in (ap_soft, ap_sup, ap_full) or ap_full - ap_sup <= 0:
        return None
    return (ap_soft - ap_sup) / (ap_full - ap_sup)


def summarize(per_run: Dict[str, dict], dataset: str) -> Dict[str, dict]:
    """Per semi-supervised percent, on the test set ``dataset``: each arm's spread over seeds, its ceiling, gap
    closed, paired differences.

    ``per_run``: :func:`collect_results`' entries, whose ``box_ap`` is ``{test set: {model: AP}}``; a percent's
    runs name their ceiling's run (``"ceiling"``) when one was planned (its ``ceiling_run`` is None otherwise).
    """
    def ap_of(run: dict, model: str) -> Optional[float]:
        return ((run.get("box_ap") or {}).get(dataset) or {}).get(model)

    def by_seed(method: str, percent: int, model: str) -> Dict[int, float]:
        return {run["seed"]: ap_of(run, model) for run in per_run.values()
                if run["method"] == method and run["percent"] == percent and ap_of(run, model) is not None}

    summary = {}
    percents = sorted({run["percent"] for run in per_run.values() if run["method"] == "soft_teacher"})
    for percent in percents:
        runs = [run for run in per_run.values() if run["percent"] == percent]
        ceiling_run = runs[0].get("ceiling")
        ap_full = ap_of(per_run.get(ceiling_run, {}), "model")
        sup = by_seed("supervised", percent, "model")
        arms = {"teacher": by_seed("soft_teacher", percent, "teacher"),
                "student": by_seed("soft_teacher", percent, "student")}
        sup_spread = spread(sup)
        entry = {
            "seeds": sorted(run["seed"] for run in runs if run["method"] == "soft_teacher"),
            "supervised": sup_spread, "ceiling": ap_full, "ceiling_run": ceiling_run,
            "max_iter": runs[0]["max_iter"],
            "burn_in_iters": next(run["burn_in_iters"] for run in runs if run["method"] == "soft_teacher"),
        }
        for arm, values in arms.items():
            entry[arm] = spread(values)
        entry["gap_closed"] = {
            arm: gap_closed(entry[arm]["mean"] if entry[arm] else None, sup_spread["mean"] if sup_spread else None,
                            ap_full) for arm in arms}
        entry["difference"] = {arm: paired_differences(values, sup) for arm, values in arms.items()}
        summary[str(percent)] = entry
    return summary


def collect_results(runs: Sequence[BenchmarkRun], output: str, opts: Sequence[str], status: Dict[str, dict]) -> Dict:
    """Read every run's final box AP (and a branch's pseudo-label statistics) from its folder under ``output``.

    Returns:
        ``{"runs": {name: figures}, "test_sets", "percents": {test set: summarize(...)}, "machine", "opts"}``;
        a run's ``box_ap`` is ``{test set: {model: AP}}`` (None until it finished); ``status`` is what
        :meth:`Scheduler.run` returned (each run's state and minutes).
    """
    ceilings = {}  # without a planned 100% run (``--no-ceiling``), no percent names one
    if any(run.percent == CEILING[0] for run in runs):
        ceilings = {p: ceiling_for(p, opts).name for p in {run.percent for run in runs} if p != CEILING[0]}
    per_run, test_sets = {}, []
    for run in runs:
        cfg = run.config(opts)
        out = os.path.join(output, run.name)
        test_sets = list(cfg.DATASETS.TEST)
        box_ap = {dataset: final_box_ap(out, cfg.SOLVER.MAX_ITER, key)
                  for dataset, key in test_set_keys(cfg.DATASETS.TEST).items()}
        entry = {"method": run.method, "percent": run.percent, "seed": run.seed,
                 "config_file": os.path.relpath(run.config_file, CHECKOUT), "max_iter": cfg.SOLVER.MAX_ITER,
                 "box_ap": None if None in box_ap.values() else box_ap, **status.get(run.name, {})}
        if run.percent in ceilings:
            entry["ceiling"] = ceilings[run.percent]
        if run.twin is not None:
            entry["twin"] = run.twin.name
            entry["branched_from"] = os.path.join(run.twin.name, checkpoint_name(cfg.SOFT_TEACHER.BURN_IN_ITERS - 1))
            entry["burn_in_iters"] = cfg.SOFT_TEACHER.BURN_IN_ITERS
            entry["pseudo_labels"] = pseudo_label_stats(out)
        per_run[run.name] = entry
    return {"runs": per_run, "test_sets": test_sets,
            "percents": {dataset: summarize(per_run, dataset) for dataset in test_sets},
            "machine": machine_description(), "opts": list(opts)}


def plot_accuracy_curves(output: str, per_run: Dict[str, dict], png: str,
                         dataset_key: Optional[str] = None) -> Dict[int, List[str]]:
    """Box AP against iterations trained, one panel per semi-supervised percent; ``{percent: lines drawn}``.
    ``dataset_key``: the test set whose evaluations are drawn, as the runs logged it (None: their only one).

    Supervised (``bbox/AP``), Soft Teacher teacher and student: one colour per arm, one line style per
    seed, the percent's 100% ceiling (same schedule) in grey; a vertical line at the branch point. A Soft
    Teacher curve starts at its twin's evaluation at the branch point, where both arms are the same model.
    """
    percents = sorted({run["percent"] for run in per_run.values() if run["method"] == "soft_teacher"})
    seeds = sorted({run["seed"] for run in per_run.values()})
    box_ap = f"{dataset_key}/bbox/AP" if dataset_key else "bbox/AP"
    figure = Figure(figsize=(6 * max(1, len(percents)), 4.5), tight_layout=True)
    FigureCanvasAgg(figure)
    drawn = {}
    for index, percent in enumerate(percents):
        axes = figure.add_subplot(1, max(1, len(percents)), index + 1)
        axes.set_title(f"{percent}% labeled")
        axes.set_xlabel("iterations trained")
        axes.set_ylabel("box AP (%)")
        lines = []

        def draw(xs, ys, label, color, style):
            if xs:
                axes.plot(xs, ys, color=color, linestyle=style, marker="o", markersize=3, label=label)
                lines.append(label)

        ceiling = next((run.get("ceiling") for run in per_run.values() if run["percent"] == percent), None)
        if ceiling in per_run:
            draw(*ap_curve(os.path.join(output, ceiling), box_ap, per_run[ceiling]["max_iter"]),
                 f"supervised 100% seed {per_run[ceiling]['seed']}", ARM_COLORS["ceiling"], ":")
        for name, run in sorted(per_run.items(), key=lambda item: (item[1]["method"] != "supervised", item[1]["seed"])):
            if run["percent"] != percent:
                continue
            style = LINE_STYLES[seeds.index(run["seed"]) % len(LINE_STYLES)]
            out = os.path.join(output, name)
            if run["method"] == "supervised":
                draw(*ap_curve(out, box_ap, run["max_iter"]), f"supervised seed {run['seed']}",
                     ARM_COLORS["supervised"], style)
                continue
            burn_in = run["burn_in_iters"]
            twin = ap_curve(os.path.join(output, run["twin"]), box_ap, run["max_iter"])
            start = [(x, y) for x, y in zip(*twin) if x == burn_in]
            for arm in ("teacher", "student"):
                xs, ys = ap_curve(out, f"{arm}/{box_ap}", run["max_iter"])
                if xs and start:
                    xs, ys = [burn_in] + xs, [start[0][1]] + ys
                draw(xs, ys, f"Soft Teacher {arm} seed {run['seed']}", ARM_COLORS[arm], style)
            axes.axvline(burn_in, color="0.6", linestyle="--", linewidth=0.8)
        if lines:
            axes.legend(fontsize="small")
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="gray")
        drawn[percent] = lines
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    figure.savefig(png, dpi=100)
    return drawn


def _ap(figures: Optional[dict]) -> str:
    """``63.1 ± 1.1 (62.0, 64.2)`` for several seeds, ``63.1`` for one."""
    if not figures:
        return "not measured"
    if len(figures["values"]) == 1:
        return f"{figures['mean']:.1f}"
    values = ", ".join(f"{v:.1f}" for v in figures["values"].values())
    return f"{figures['mean']:.1f} ± {figures['half_range']:.1f} ({values})"


def _share(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _differences(values: Dict[str, float]) -> str:
    return ", ".join(f"seed {seed}: {value:+.1f}" for seed, value in values.items()) or "n/a"


def _table(percents: Dict[str, dict], with_ceiling: bool) -> str:
    """One row per percent; ``with_ceiling``: with the "supervised 100%" and "gap closed" columns."""
    rows = []
    for percent, entry in percents.items():
        ceiling_cells = [] if not with_ceiling else [
            "not measured" if entry["ceiling"] is None else f"{entry['ceiling']:.1f}",
            f"{_share(entry['gap_closed']['teacher'])} / {_share(entry['gap_closed']['student'])}"]
        rows.append([f"{percent}%", f"{entry['max_iter']} / {entry['burn_in_iters']}",
                     ", ".join(map(str, entry["seeds"])), _ap(entry["supervised"]), _ap(entry["teacher"]),
                     _ap(entry["student"])] + ceiling_cells
                    + [_differences(entry["difference"]["teacher"]), _differences(entry["difference"]["student"])])
    ceiling_columns = ["supervised 100%", "gap closed (teacher / student)"] if with_ceiling else []
    return markdown_table(
        ["labeled", "schedule", "seeds", "supervised", "Soft Teacher (teacher)", "Soft Teacher (student)"]
        + ceiling_columns + ["teacher - supervised", "student - supervised"], rows)


def markdown(results: Dict, command: str, figure: Optional[str] = None) -> str:
    """The report of :func:`collect_results`: an AP table per test set (the held-out one first), the figure (a
    relative path) and the pseudo labels."""
    runs, test_sets = results["runs"], results["test_sets"]
    ordered = sorted(test_sets, key=lambda name: name != HELD_OUT)
    with_ceiling = any(run.get("ceiling") for run in runs.values())
    lines = [
        "## Accuracy on the synthetic shapes set",
        "",
        f"Box AP (COCO AP@[.5:.95], %) at the end of each row's schedule on {', then '.join(ordered)}"
        + (f" ({HELD_OUT}: held out, it chose no setting; the settings were chosen on the other)"
           if HELD_OUT in test_sets and len(test_sets) > 1 else "")
        + "; fold 1 of each split; configs under `configs/shapes/` (`supervised_R18_FPN_*`, `soft_teacher_R18_FPN_*`), "
        "`SEED` per run. Each Soft Teacher run branches from the supervised run of the same seed at its burn-in (the "
        "schedule column gives the iterations / the branch point): the two share everything before it. "
        + ("The 100% ceiling of a row is trained on that row's schedule. " if with_ceiling else "")
        + "Cells give the mean ± half-range over seeds and each seed's AP in parentheses. "
        + ("Gap closed = (AP_soft - AP_sup) / (AP_100 - AP_sup) on the seed means. " if with_ceiling else "")
        + "The last two columns pair the runs of each seed (soft - supervised).",
    ]
    for dataset in ordered:
        lines += ["", f"**{dataset}**", "", _table(results["percents"][dataset], with_ceiling)]
    if figure:
        lines += ["", f"![Box AP on {ordered[0]} during training]({figure})"]
    pseudo_rows = []
    for name, run in runs.items():
        stats = run.get("pseudo_labels")
        if stats:
            pseudo_rows.append([name] + [f"{stats[key]:.2f}" if key in stats else "n/a" for key, _ in PSEUDO_COLUMNS])
    if pseudo_rows:
        lines += ["", f"Pseudo labels of the Soft Teacher runs (mean over each run's last {PSEUDO_WINDOW} "
                      "iterations; precision and recall against the unlabeled images' hidden boxes, the other "
                      "columns without them, `soft_teacher/diagnostics.py`):", "",
                  markdown_table(["run"] + [title for _, title in PSEUDO_COLUMNS], pseudo_rows)]
    unfinished = [f"{name}: {run.get('state')}" for name, run in runs.items() if run.get("box_ap") is None]
    lines += ["", f"Machine: {machine_line(results['machine'])}.", "",
              f"Command: `{command}`"]
    if results["opts"]:
        lines += ["", f"Config overrides for every run: `{shlex.join(results['opts'])}`."]
    if unfinished:
        lines += ["", "Not finished: " + "; ".join(unfinished) + "."]
    return "\n".join(lines)


def run_benchmark(runs: Sequence[BenchmarkRun], output: str, opts: Sequence[str], parallel: int,
                  benchmarks_md: Optional[str], command: str) -> Dict:
    """Train what is not finished yet, ``parallel`` runs at once, and report; what ``results.json`` holds.

    Writes ``output/results.json``, ``results.md`` and ``accuracy_curves.png``; with ``benchmarks_md`` also
    its ``accuracy`` section and ``docs/accuracy_curves.png`` beside that file. ``command`` is the command
    line the report quotes.

    Raises:
        ConfigError: a run would test on nothing (its ``DATASETS.TEST`` emptied by ``opts``), or a run folder
            holds a run of another config.
    """
    untested = sorted({os.path.basename(run.config_file) for run in runs if not run.config(opts).DATASETS.TEST})
    if untested:
        raise ConfigError(f"{', '.join(untested)} would test on nothing with these overrides: the table compares "
                          "the runs' AP on DATASETS.TEST, so keep one, e.g. DATASETS.TEST \"('shapes_test',)\".")
    print("Preparing the shapes set (generated on first use)...", flush=True)
    for name in ("shapes_train", "shapes_val", HELD_OUT):
        DatasetCatalog.get(name)
    status = Scheduler([run.run for run in runs], output, opts, parallel).run()
    results = collect_results(runs, output, opts, status)
    results["command"] = command
    test_sets = results["test_sets"]
    drawn = HELD_OUT if HELD_OUT in test_sets else test_sets[0]
    plot_accuracy_curves(output, results["runs"], os.path.join(output, FIGURE), test_set_keys(test_sets)[drawn])
    section = None
    if benchmarks_md:
        docs_png = os.path.join(os.path.dirname(os.path.abspath(benchmarks_md)), "docs", FIGURE)
        os.makedirs(os.path.dirname(docs_png), exist_ok=True)
        shutil.copyfile(os.path.join(output, FIGURE), docs_png)
        section = markdown(results, command, f"docs/{FIGURE}")
    write_results(output, results, markdown(results, command, FIGURE), benchmarks_md, "accuracy",
                  section_text=section)
    return results

# ----------------------------------------------------------------------------- command line


def _int_list(text: str) -> List[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got '{text}'")
    return sorted(set(values))


def _seed_list(text: str) -> Tuple[Optional[int], List[int]]:
    """``--seeds`` value: ``1,2`` (every percent: ``(None, [1, 2])``) or ``5=1,2,3`` (``(5, [1, 2, 3])``)."""
    percent, _, seeds = text.rpartition("=")
    if percent and not percent.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected SEEDS or PERCENT=SEEDS (e.g. 1,2 or 5=1,2,3), got '{text}'")
    return (int(percent) if percent else None), _int_list(seeds)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/benchmark_accuracy", help="folder of the runs and results")
    parser.add_argument("--percents", type=_int_list, help="labeled percents of the supervised / Soft Teacher "
                        "pairs, from 1,5,10 (default: 1,5)")
    parser.add_argument("--seeds", type=_seed_list, action="append", default=[],
                        help="seeds of every pair, or PERCENT=SEEDS for one percent's pairs; may be repeated "
                        "(e.g. --seeds 1,2 --seeds 5=1,2,3; default: 1 for 1%%, 1,2 for 5%%, 1 for 10%%); the 100%% "
                        "ceiling uses seed 1")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1,
                        help="runs trained at once (default: the CPU cores)")
    parser.add_argument("--no-ceiling", dest="ceilings", action="store_false",
                        help="train no 100%% ceiling (one supervised run per schedule less); the report then has "
                        "no 'supervised 100%%' and 'gap closed' columns")
    parser.add_argument("--benchmarks-md", metavar="FILE", help="also write the results into this Markdown file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every run")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    percents = args.percents or sorted({p for p, _ in DEFAULT_TABLE})
    unknown = [p for p in percents if p not in SEMI_SUPERVISED_PERCENTS]
    if unknown:
        parser.error(f"--percents: no Soft Teacher config for {unknown}; choose from {SEMI_SUPERVISED_PERCENTS}")
    try:
        args.table = seed_table(percents, dict(args.seeds))  # the last --seeds given for each percent
    except ValueError as err:
        parser.error(f"--seeds: {err} (--percents)")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "tools/benchmark_accuracy.py"] + list(sys.argv[1:] if argv is None else argv))
    try:
        runs = plan_runs(args.table, args.opts, args.ceilings)
        problems = branch_problems([run.run for run in runs], args.opts)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if problems:
        print("error: the Soft Teacher runs cannot branch from their supervised twins:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 2
    # A terminated benchmark stops its runs (Scheduler.run's cleanup) instead of leaving them orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        results = run_benchmark(runs, args.output, args.opts, args.parallel, args.benchmarks_md, command)
    except ConfigError as err:  # e.g. a run folder of another config
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if all(run["box_ap"] is not None for run in results["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
