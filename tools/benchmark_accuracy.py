#!/usr/bin/env python
"""Accuracy benchmark on the synthetic shapes set: how much of the labeled-data gap Soft Teacher closes.

Seven runs with one model and one schedule (``configs/shapes/Base-Shapes-Benchmark.yaml``):
supervised on 1%, 5% and 10% of shapes_train (fold 1), supervised on 100% (the ceiling),
and Soft Teacher on 1%, 5% and 10% labeled with the rest unlabeled. Each run is
``train_net.py`` in a process of its own, several side by side (they are small; on several
GPUs they are spread over them), logging to ``OUTPUT/<run>/log.txt``. The box AP of the
last evaluation on shapes_val is read from each run's ``metrics.json``, and for each
percentage p the share of the gap closed is ``(AP_soft - AP_sup) / (AP_100 - AP_sup)``,
with the teacher's AP (the student's is reported too).

Re-running continues where it stopped: finished runs are read, not trained again; the
others resume from their last checkpoint (every 500 iterations). ``--stop-after`` ends the
runs in time to report before an external time limit: where commands are cut after 10
minutes, run ``--stop-after 540`` and repeat the same command until every run is finished.

Usage::

    python tools/benchmark_accuracy.py --output output/benchmark_accuracy --benchmarks-md BENCHMARKS.md
    python tools/benchmark_accuracy.py --runs supervised_10pct,soft_teacher_10pct
    # a CPU smoke test with tiny settings (the options after the flags go to every run):
    python tools/benchmark_accuracy.py --output /tmp/acc --parallel 2 --runs supervised_1pct,soft_teacher_1pct \\
        MODEL.DEVICE cpu SOLVER.MAX_ITER 4 SOLVER.AMP.ENABLED False SOFT_TEACHER.BURN_IN_ITERS 2
"""
import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling tools below

import benchmark_report  # noqa: E402
import torch  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402

import soft_teacher  # noqa: E402,F401  (registers the shapes set)
from soft_teacher.engine import ConfigError, load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs", "shapes")
POLL_SECONDS = 5
STATUS_SECONDS = 60


@dataclass(frozen=True)
class Run:
    name: str
    method: str  # "supervised" or "soft_teacher"
    percent: int

    @property
    def config_file(self) -> str:
        return os.path.join(CONFIG_DIR, f"{self.method}_R18_FPN_{self.percent}pct.yaml")


RUNS = tuple(Run(f"supervised_{p}pct", "supervised", p) for p in (1, 5, 10, 100)) + tuple(
    Run(f"soft_teacher_{p}pct", "soft_teacher", p) for p in (1, 5, 10)
)
SEMI_SUPERVISED_PERCENTS = (1, 5, 10)


def read_metrics(output_dir: str) -> List[dict]:
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def final_box_ap(output_dir: str, max_iter: int) -> Optional[Dict[str, float]]:
    """``{"model"|"teacher"|"student": AP}`` of the evaluation after the last iteration, or None if not there yet.

    The trainer logs that evaluation at iteration ``max_iter`` (periodic ones at ``k * period - 1``).
    """
    for record in reversed(read_metrics(output_dir)):
        if record.get("iteration", -1) < max_iter - 1:
            continue
        if "bbox/AP" in record:
            return {"model": record["bbox/AP"]}
        figures = {key.split("/")[0]: value for key, value in record.items() if key.endswith("/bbox/AP")}
        if figures:
            return figures
    return None


def last_iteration(output_dir: str) -> int:
    """Iterations trained so far, from the training records of ``metrics.json``."""
    return max((r["iteration"] for r in read_metrics(output_dir) if "total_loss" in r), default=-1) + 1


def gap_closed(ap_soft: Optional[float], ap_sup: Optional[float], ap_full: Optional[float]) -> Optional[float]:
    """``(AP_soft - AP_sup) / (AP_100 - AP_sup)``; None when a figure is missing or the gap is not positive."""
    if None in (ap_soft, ap_sup, ap_full) or ap_full - ap_sup <= 0:
        return None
    return (ap_soft - ap_sup) / (ap_full - ap_sup)


class RunProcess:
    """One ``train_net.py`` process of a run, with its own log and (with several GPUs) its own GPU."""

    def __init__(self, run: Run, output_dir: str, opts: Sequence[str], resume: bool, gpu: Optional[int]):
        self.run = run
        self.command = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", run.config_file]
        self.command += (["--resume"] if resume else []) + ["OUTPUT_DIR", output_dir] + list(opts)
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        os.makedirs(output_dir, exist_ok=True)
        self._stdout = open(os.path.join(output_dir, "stdout.log"), "a")
        self.started = time.time()
        self.process = subprocess.Popen(self.command, stdout=self._stdout, stderr=subprocess.STDOUT, env=env,
                                        cwd=REPO, start_new_session=True)

    def poll(self) -> Optional[int]:
        code = self.process.poll()
        if code is not None:
            self._stdout.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait()
        self._stdout.close()


def train_runs(runs: Sequence[Run], output: str, opts: Sequence[str], parallel: int,
               stop_after: Optional[float]) -> Dict[str, dict]:
    """Train the runs that are not finished, ``parallel`` at a time; return ``{run: status}``."""
    gpus = torch.cuda.device_count()
    status = {}
    pending = []
    for run in runs:
        max_iter = load_config(run.config_file, opts).SOLVER.MAX_ITER
        out = os.path.join(output, run.name)
        if final_box_ap(out, max_iter) is not None:
            status[run.name] = {"state": "finished earlier"}
        else:
            pending.append((run, out, os.path.isfile(os.path.join(out, "last_checkpoint")), max_iter))
    running: List[tuple] = []
    launched = 0
    start = last_status = time.time()
    while pending or running:
        while pending and len(running) < parallel:
            run, out, resume, max_iter = pending.pop(0)
            process = RunProcess(run, out, opts, resume, launched % gpus if gpus > 1 else None)
            launched += 1
            print(f"start  {run.name:20s} ({'resumed' if resume else 'from scratch'}): "
                  f"{shlex.join(process.command)}", flush=True)
            running.append((process, out, max_iter))
        time.sleep(POLL_SECONDS)
        for entry in list(running):
            process, out, max_iter = entry
            code = process.poll()
            if code is None:
                continue
            running.remove(entry)
            minutes = (time.time() - process.started) / 60
            state = "trained" if code == 0 else f"failed (exit code {code}; see {out}/stdout.log)"
            status[process.run.name] = {"state": state, "minutes": round(minutes, 1)}
            print(f"finish {process.run.name:20s} {state} after {minutes:.1f} min", flush=True)
        if time.time() - last_status >= STATUS_SECONDS and running:
            last_status = time.time()
            print("  progress: " + ", ".join(f"{p.run.name} {last_iteration(out)}/{m}" for p, out, m in running),
                  flush=True)
        if stop_after is not None and time.time() - start > stop_after and running:
            for process, out, max_iter in running:
                process.stop()
                where = f"{last_iteration(out)}/{max_iter}"
                state = f"stopped at iteration {where} (--stop-after); run again to resume"
                status[process.run.name] = {"state": state}
                print(f"stop   {process.run.name:20s} at iteration {last_iteration(out)}/{max_iter}", flush=True)
            running = []
            for run, out, _, _ in pending:
                status[run.name] = {"state": "not started (--stop-after)"}
            pending = []
    return status


def collect_results(runs: Sequence[Run], output: str, opts: Sequence[str], status: Dict[str, dict]) -> Dict:
    per_run = {}
    for run in runs:
        cfg = load_config(run.config_file, opts)
        per_run[run.name] = {
            "method": run.method,
            "percent": run.percent,
            "config_file": os.path.relpath(run.config_file, REPO),
            "max_iter": cfg.SOLVER.MAX_ITER,
            "box_ap": final_box_ap(os.path.join(output, run.name), cfg.SOLVER.MAX_ITER),
            **status.get(run.name, {}),
        }
    ceiling = (per_run.get("supervised_100pct", {}).get("box_ap") or {}).get("model")
    gaps = {}
    for percent in SEMI_SUPERVISED_PERCENTS:
        sup = (per_run.get(f"supervised_{percent}pct", {}).get("box_ap") or {}).get("model")
        soft = per_run.get(f"soft_teacher_{percent}pct", {}).get("box_ap") or {}
        gaps[f"{percent}pct"] = {
            "teacher": gap_closed(soft.get("teacher"), sup, ceiling),
            "student": gap_closed(soft.get("student"), sup, ceiling),
        }
    return {"runs": per_run, "gap_closed": gaps, "machine": benchmark_report.machine_description(),
            "opts": list(opts)}


def _ap(value: Optional[float]) -> str:
    return "not measured" if value is None else f"{value:.1f}"


def _share(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def markdown(results: Dict, command: str) -> str:
    runs = results["runs"]
    ceiling = (runs.get("supervised_100pct", {}).get("box_ap") or {}).get("model")
    rows = []
    for percent in SEMI_SUPERVISED_PERCENTS:
        sup = (runs.get(f"supervised_{percent}pct", {}).get("box_ap") or {}).get("model")
        soft = runs.get(f"soft_teacher_{percent}pct", {}).get("box_ap") or {}
        gap = results["gap_closed"][f"{percent}pct"]
        rows.append([f"{percent}%", _ap(sup), _ap(soft.get("teacher")), _ap(soft.get("student")), _ap(ceiling),
                     _share(gap["teacher"]), _share(gap["student"])])
    unfinished = [f"{name}: {run.get('state')}" for name, run in runs.items() if run.get("box_ap") is None]
    iterations = sorted({run["max_iter"] for run in runs.values()})
    lines = [
        "## Accuracy on the synthetic shapes set",
        "",
        f"Box AP on shapes_val (COCO AP@[.5:.95], %); fold 1 of each split; {', '.join(map(str, iterations))} "
        "iterations; configs under `configs/shapes/` (`supervised_R18_FPN_*`, `soft_teacher_R18_FPN_*`). "
        "Gap closed = (AP_soft - AP_sup) / (AP_100 - AP_sup).",
        "",
        benchmark_report.markdown_table(
            ["labeled", "supervised", "Soft Teacher (teacher)", "Soft Teacher (student)", "supervised 100%",
             "gap closed (teacher)", "gap closed (student)"], rows),
        "",
        f"Machine: {benchmark_report.machine_line(results['machine'])}.",
        "",
        f"Command: `{command}`",
    ]
    if results["opts"]:
        lines += ["", f"Config overrides for every run: `{shlex.join(results['opts'])}`."]
    if unfinished:
        lines += ["", "Not finished: " + "; ".join(unfinished) + "."]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/benchmark_accuracy", help="folder of the runs and results")
    parser.add_argument("--runs", help="a subset of the runs, comma-separated: " + ",".join(run.name for run in RUNS))
    parser.add_argument("--parallel", type=int, default=len(RUNS), help="runs trained at once (default: all)")
    parser.add_argument("--stop-after", type=float, metavar="SECONDS",
                        help="stop the runs still training after this long, report, and resume on the next call")
    parser.add_argument("--benchmarks-md", metavar="FILE", help="also write the table into this Markdown file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every run")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    names = [run.name for run in RUNS]
    args.runs = names if args.runs is None else args.runs.split(",")
    unknown = [name for name in args.runs if name not in names]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "tools/benchmark_accuracy.py"] + list(sys.argv[1:] if argv is None else argv))
    runs = [run for run in RUNS if run.name in args.runs]
    try:
        for run in runs:
            load_config(run.config_file, args.opts)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("Preparing the shapes set (generated on first use)...", flush=True)
    for name in ("shapes_train", "shapes_val"):
        DatasetCatalog.get(name)
    status = train_runs(runs, args.output, args.opts, args.parallel, args.stop_after)
    results = collect_results(runs, args.output, args.opts, status)
    results["command"] = command
    benchmark_report.write_results(args.output, results, markdown(results, command), args.benchmarks_md, "accuracy")
    return 0 if all(run["box_ap"] is not None for run in results["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
