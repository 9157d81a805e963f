#!/usr/bin/env python
"""Accuracy benchmark on the synthetic shapes set: how much of the labeled-data gap Soft Teacher closes.

For each (labeled percent p, seed s) -- by default (1, 1), (5, 1), (5, 2) -- it trains a supervised run
``supervised_{p}pct_seed{s}`` and a Soft Teacher run ``soft_teacher_{p}pct_seed{s}``, plus the supervised
ceiling ``supervised_100pct_seed1``; the configs are ``configs/shapes/{supervised,soft_teacher}_R18_FPN_{p}pct.yaml``
with ``SEED s``. Where a percent's configs train another schedule than the 100% config, that percent gets its own
ceiling on its schedule (e.g. ``supervised_100pct_seed1_max_iter3600_steps3000``). Each run is one ``train_net.py``
process logging into ``OUTPUT/<run>/``, ``--parallel`` at once (one torch thread each unless OMP_NUM_THREADS is set;
spread over the GPUs when there are several).

A Soft Teacher run branches from its supervised twin: with B = its ``SOFT_TEACHER.BURN_IN_ITERS``, the twin's
checkpoint ``model_{B-1:07d}.pth`` is copied into the Soft Teacher folder and the run resumes from it, so it
continues at iteration B with the twin's weights (student and teacher), optimizer and LR schedule; the two arms
share their first B iterations. A branch waits until that checkpoint is written. Finished runs (final evaluation
in ``metrics.json``) are read, not trained again; interrupted ones resume from their last checkpoint.
The training, branching and reading of the runs is ``soft_teacher.benchmark.branch_runs``; the report
``soft_teacher.benchmark.accuracy``.

Writes ``OUTPUT/results.json``, ``OUTPUT/results.md`` (final box AP as mean +- half-range over seeds, the gap
closed, per-seed differences, pseudo-label statistics) and ``OUTPUT/accuracy_curves.png``; with
``--benchmarks-md`` also its section of that file and ``docs/accuracy_curves.png`` beside it.

Usage::

    python tools/benchmark_accuracy.py --output output/benchmark_accuracy --benchmarks-md BENCHMARKS.md
    python tools/benchmark_accuracy.py --percents 1,5,10 --seeds 1,2 --parallel 8 MODEL.DEVICE cuda
    python tools/benchmark_accuracy.py --percents 1,5 --seeds 1=1,2 --seeds 5=1,2,3
"""
import argparse
import os
import shlex
import signal
import sys
from typing import List, Optional, Sequence, Tuple

from soft_teacher.benchmark.accuracy import (DEFAULT_TABLE, SEMI_SUPERVISED_PERCENTS, plan_runs, run_benchmark,
                                             seed_table)
from soft_teacher.benchmark.branch_runs import branch_problems
from soft_teacher.engine import ConfigError


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/benchmark_accuracy", help="folder of the runs and results")
    parser.add_argument("--percents", type=_int_list, help="labeled percents of the supervised / Soft Teacher "
                        "pairs, from 1,5,10 (default: 1,5)")
    parser.add_argument("--seeds", type=_seed_list, action="append", default=[],
                        help="seeds of every pair, or PERCENT=SEEDS for one percent's pairs; may be repeated "
                        "(e.g. --seeds 1,2 --seeds 5=1,2,3; default: 1 for 1%%, 1,2 for 5%%, 1 for 10%%); the 100%% "
                        "ceiling uses seed 1")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1,
                        help="runs trained at once (default: the CPU cores)")
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
        runs = plan_runs(args.table, args.opts)
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
