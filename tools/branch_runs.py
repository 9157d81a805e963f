"""Runs that branch: ``train_net.py`` processes side by side, Soft Teacher runs continuing their supervised twins.

A *branch* is a Soft Teacher run that does not train its burn-in itself: with B its
``SOFT_TEACHER.BURN_IN_ITERS``, the supervised run of the same model and schedule (its *twin*)
saves ``model_{B-1:07d}.pth``; that checkpoint is copied into the branch's folder, named in its
``last_checkpoint``, and the branch starts ``train_net.py --resume``. It so continues at iteration B
with the twin's weights (student and teacher), optimizer and LR schedule: the two arms share their
first B iterations, and differ only in what Soft Teacher adds after them. :func:`branch_problems`
says whether two configs allow it (a checkpoint saved at B - 1, the :data:`SHARED_SOLVER_KEYS` equal).

:class:`Scheduler` trains a list of :class:`Run` s, each one ``train_net.py`` process logging into
``OUTPUT/<run name>/`` (``stdout.log`` and the trainer's own ``log.txt`` / ``metrics.json``),
several at once, starting each branch as soon as its twin's checkpoint is complete, and prints
every run's progress and ETA each minute. A run whose ``metrics.json`` holds its final evaluation is
read, not trained again; an interrupted one resumes from its ``last_checkpoint``.

The readers (:func:`final_evaluation`, :func:`final_box_ap`, :func:`last_iteration`,
:func:`pseudo_label_stats`, :func:`ap_curve`) take a run's output folder and read its ``metrics.json``.

A module that ``tools/benchmark_accuracy.py`` and ``tools/train_twin.py`` import, not a command. It lives in the
checkout's ``tools/``: :data:`CHECKOUT` is the folder above it, which holds ``train_net.py`` and ``configs/``.
"""
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import yaml

from soft_teacher.engine import ConfigError, SoftTeacherTrainer, load_config

from plot_metrics import METRICS_FILE, Series, load_metrics, metrics_records

__all__ = [
    "CHECKOUT", "NOT_TRAINING_KEYS", "PSEUDO_WINDOW", "RESUME_KEYS", "SHARED_KEYS", "SHARED_SOLVER_KEYS",
    "STUDENT_VIEW_KEYS", "TRAIN_NET", "Run", "RunProcess", "Scheduler",
    "ap_curve", "branch_checkpoint_ready", "branch_problems", "checkpoint_iteration", "checkpoint_name",
    "final_box_ap", "final_evaluation", "last_checkpoint", "last_iteration", "pseudo_label_stats",
    "run_finished", "saved_config_differences", "start_branch", "test_set_keys",
]

# The checkout: the folder above tools/, holding train_net.py and configs/.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The checkout's train_net.py, which each run's process executes.
TRAIN_NET = os.path.join(CHECKOUT, "train_net.py")
PSEUDO_WINDOW = 100  # pseudo-label statistics: mean over the last this many iterations
# Keys a branch and its twin must share: the branch continues the twin's detector, labeled data,
# optimizer and LR schedule (a checkpoint holds the scheduler's position, not its settings).
SHARED_SOLVER_KEYS = ("MAX_ITER", "STEPS", "BASE_LR", "IMS_PER_BATCH", "WARMUP_ITERS", "WARMUP_FACTOR",
                      "WARMUP_METHOD", "GAMMA", "LR_SCHEDULER_NAME", "MOMENTUM", "WEIGHT_DECAY", "CLIP_GRADIENTS",
                      "AMP")
SHARED_KEYS = tuple(f"SOLVER.{key}" for key in SHARED_SOLVER_KEYS) + (
    "DATASETS.TRAIN", "INPUT", "MODEL.BACKBONE", "MODEL.RESNETS", "MODEL.FPN", "MODEL.ANCHOR_GENERATOR",
    "MODEL.RPN", "MODEL.ROI_HEADS", "MODEL.ROI_BOX_HEAD", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD")
# INPUT keys of the student (strong) view alone, which a supervised run never uses: a branch may set its own.
STUDENT_VIEW_KEYS = ("INPUT.STRONG_GEOMETRIC_OPS", "INPUT.STRONG_TRANSLATE_FRAC", "INPUT.STRONG_ROTATE_DEG",
                     "INPUT.STRONG_SHEAR_DEG", "INPUT.ERASE_COUNT", "INPUT.ERASE_MAX_FRAC")
# Keys on which a run folder's saved config.yaml must agree with the run's config before the folder is read as
# finished or resumed: a folder of another schedule, data, seed or method setting would otherwise pass for this
# run. Of a section, the keys both configs have (a key added since did not exist for that run), less those
# that do not change training; the SOFT_TEACHER section and the student view only for Soft Teacher runs.
RESUME_KEYS = ("MODEL.META_ARCHITECTURE", "SOLVER.MAX_ITER", "SOLVER.STEPS", "SOFT_TEACHER.BURN_IN_ITERS",
               "SOFT_TEACHER", "DATASETS.TRAIN", "DATASETS.TRAIN_UNLABELED", "SEED") + STUDENT_VIEW_KEYS
NOT_TRAINING_KEYS = ("SOFT_TEACHER.EVAL_MODEL", "SOFT_TEACHER.NO_PSEUDO_BOX_WARN_ITERS",
                     "SOFT_TEACHER.CLASS_SHARE_WARN_ITERS", "SOFT_TEACHER.CLASS_SHARE_WARN_RATIO")
EVALUATED_MODELS = (("", "model"), ("teacher/", "teacher"), ("student/", "student"))  # metrics.json key prefix
POLL_SECONDS = 5
STATUS_SECONDS = 60


@dataclass(frozen=True)
class Run:
    """One ``train_net.py`` run: its folder name under the output, config, own overrides and twin.

    ``twin``: the supervised run this one branches from (None: it trains from scratch).
    ``opts``: overrides of this run only (e.g. ``("SEED", "2")``), before the ones every run gets.
    """

    name: str
    config_file: str
    opts: Tuple[str, ...] = ()
    twin: Optional["Run"] = None

    def config(self, opts: Sequence[str] = ()):
        """The run's config with its own overrides, then ``opts`` (as its command line merges them)."""
        return load_config(self.config_file, list(self.opts) + list(opts))


# ----------------------------------------------------------------------------- metrics.json


def _series(output_dir: str) -> Series:
    path = os.path.join(output_dir, METRICS_FILE)
    return load_metrics(path) if os.path.isfile(path) else {}


def final_evaluation(output_dir: str, max_iter: int,
                     dataset: Optional[str] = None) -> Optional[Dict[str, Dict[str, float]]]:
    """``{"model"|"teacher"|"student": {"AP": ..., "AP50": ..., ...}}`` of the evaluation after the last
    iteration (every ``bbox/*`` field COCOEvaluator logged, per-class APs included; NaN where undefined),
    or None if it is not there yet.

    The trainer logs that evaluation at iteration ``max_iter`` (periodic ones at ``k * period - 1``). With
    several test sets, Detectron2 logs each under its name (``teacher/shapes_val/bbox/AP``): ``dataset``
    names the one to read (None: a run of one test set, logged without its name; see :func:`test_set_keys`).
    """
    series = _series(output_dir)
    evaluation = {}
    for prefix, model in EVALUATED_MODELS:
        prefix += f"{dataset}/bbox/" if dataset else "bbox/"
        iterations, _ = series.get(prefix + "AP", ([], []))
        if not iterations or iterations[-1] < max_iter - 1:
            continue
        fields = {}
        for key, (key_iterations, values) in series.items():
            if key.startswith(prefix) and key_iterations[-1] == iterations[-1]:
                fields[key[len(prefix):]] = values[-1]
        evaluation[model] = fields
    return evaluation or None


def final_box_ap(output_dir: str, max_iter: int, dataset: Optional[str] = None) -> Optional[Dict[str, float]]:
    """``{"model"|"teacher"|"student": AP}`` of the evaluation after the last iteration on ``dataset`` (see
    :func:`final_evaluation`), or None if not there yet."""
    evaluation = final_evaluation(output_dir, max_iter, dataset)
    return None if evaluation is None else {model: fields["AP"] for model, fields in evaluation.items()}


def run_finished(output_dir: str, cfg) -> bool:
    """Whether the run of ``cfg`` in ``output_dir`` is over: its final evaluation is in ``metrics.json`` (or,
    with no test set, ``model_final.pth`` is there)."""
    if not cfg.DATASETS.TEST:
        return os.path.isfile(os.path.join(output_dir, "model_final.pth"))
    first = cfg.DATASETS.TEST[0]
    return final_box_ap(output_dir, cfg.SOLVER.MAX_ITER, test_set_keys(cfg.DATASETS.TEST)[first]) is not None


def test_set_keys(test_sets: Sequence[str]) -> Dict[str, Optional[str]]:
    """``{test set: the name its evaluation is logged under}`` (None for a run's only test set)."""
    return {name: (name if len(test_sets) > 1 else None) for name in test_sets}


def last_iteration(output_dir: str) -> int:
    """Iterations trained so far: after the last training record (``total_loss``) of ``metrics.json`` in file
    order, not the highest one, since a run resumed from an earlier checkpoint logs its iterations again."""
    path = os.path.join(output_dir, METRICS_FILE)
    iterations = [record["iteration"] for record in metrics_records(path) if "total_loss" in record] \
        if os.path.isfile(path) else []
    return int(iterations[-1]) + 1 if iterations else 0


def pseudo_label_stats(output_dir: str, window: int = PSEUDO_WINDOW) -> Dict[str, float]:
    """Each ``pseudo/*`` key's mean over the records of the last ``window`` iterations that have it."""
    series = {key: points for key, points in _series(output_dir).items() if key.startswith("pseudo/")}
    if not series:
        return {}
    last = max(iterations[-1] for iterations, _ in series.values())
    stats = {}
    for key, (iterations, values) in sorted(series.items()):
        recent = [value for iteration, value in zip(iterations, values) if iteration > last - window]
        if recent:
            stats[key] = sum(recent) / len(recent)
    return stats


def ap_curve(output_dir: str, key: str, max_iter: int) -> Tuple[List[int], List[float]]:
    """``(iterations trained, AP)`` of each evaluation of ``key``: a periodic one logged at ``i`` follows
    ``i + 1`` iterations, the final one (logged at ``max_iter``) ``max_iter``."""
    iterations, values = _series(output_dir).get(key, ([], []))
    return [min(i + 1, max_iter) for i in iterations], list(values)


# ----------------------------------------------------------------------------- branching


def checkpoint_name(iteration: int) -> str:
    """Detectron2's name of the periodic checkpoint saved after ``iteration``."""
    return f"model_{iteration:07d}.pth"


def checkpoint_iteration(name: str) -> float:
    """The iteration a checkpoint file name was saved after (``model_final``: infinity; unknown: -1)."""
    if name.startswith("model_final"):
        return math.inf
    match = re.fullmatch(r"model_(\d+)\.pth", name)
    return int(match.group(1)) if match else -1


def last_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint ``output_dir/last_checkpoint`` names (what ``--resume`` loads), or None."""
    path = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def _get(cfg, dotted_key: str):
    for name in dotted_key.split("."):
        cfg = cfg[name]
    return cfg


def _shared_part(cfg, dotted_key: str):
    """``_get(cfg, dotted_key)``, a section without its :data:`STUDENT_VIEW_KEYS`."""
    value = _get(cfg, dotted_key)
    if not isinstance(value, dict):
        return value
    return {name: v for name, v in value.items() if f"{dotted_key}.{name}" not in STUDENT_VIEW_KEYS}


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def saved_config_differences(output_dir: str, cfg) -> List[str]:
    """``"KEY: saved vs now"`` for each :data:`RESUME_KEYS` on which ``output_dir/config.yaml`` (what
    ``train_net.py`` saved when it started there) differs from ``cfg``; none without that file."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        saved = yaml.safe_load(f) or {}
    differences = []
    for key in RESUME_KEYS:
        if (key == "SOFT_TEACHER" or key in STUDENT_VIEW_KEYS) and cfg.MODEL.META_ARCHITECTURE != "SoftTeacher":
            continue
        value = saved
        for name in key.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        if value is None and key in STUDENT_VIEW_KEYS:  # a run from before the key existed
            continue
        if isinstance(value, dict):  # a section: the keys both configs have
            section = _get(cfg, key)
            pairs = [(f"{key}.{name}", v, section[name]) for name, v in value.items()
                     if name in section and f"{key}.{name}" not in NOT_TRAINING_KEYS + RESUME_KEYS]
        else:
            pairs = [(key, value, _get(cfg, key))]
        for name, saved_value, now in pairs:
            if _plain(saved_value) != _plain(now):
                differences.append(f"{name}: {saved_value} saved vs {now} now")
    return differences


def branch_problems(runs: Sequence[Run], opts: Sequence[str] = (), world_size: int = 1) -> List[str]:
    """Why a run could not branch from its twin, one line each (none: all can), with the configs scaled to
    ``world_size`` processes as they will train.

    Raises:
        ConfigError: a config does not load with ``opts``.
    """
    problems = []
    for run in runs:
        if run.twin is None:
            continue
        soft, sup = (SoftTeacherTrainer.auto_scale_workers(r.config(opts), world_size) for r in (run, run.twin))
        burn_in, period = soft.SOFT_TEACHER.BURN_IN_ITERS, sup.SOLVER.CHECKPOINT_PERIOD
        if not 0 < burn_in < soft.SOLVER.MAX_ITER:
            problems.append(f"{run.name}: SOFT_TEACHER.BURN_IN_ITERS is {burn_in}; the branch point must lie in "
                            f"(0, SOLVER.MAX_ITER = {soft.SOLVER.MAX_ITER}).")
        elif burn_in % period:
            problems.append(
                f"{run.name} branches at iteration {burn_in} (SOFT_TEACHER.BURN_IN_ITERS) from "
                f"{run.twin.name}/{checkpoint_name(burn_in - 1)}, but the supervised SOLVER.CHECKPOINT_PERIOD "
                f"{period} saves only model_{{k*{period}-1:07d}}.pth: make BURN_IN_ITERS a multiple of the period.")
        differing = [key for key in SHARED_KEYS if _shared_part(soft, key) != _shared_part(sup, key)]
        if differing:
            problems.append(f"{run.name} and {run.twin.name} differ in {', '.join(differing)}: the branch "
                            "continues the supervised detector, data, optimizer and LR schedule, so they must agree.")
    return problems


def branch_checkpoint_ready(twin_dir: str, burn_in: int, twin_training: bool) -> bool:
    """Whether the twin's ``model_{B-1}`` is there and complete.

    While the twin trains, a checkpoint is complete once ``last_checkpoint`` names it or a later one
    (Detectron2 writes that file after the checkpoint).
    """
    if not os.path.isfile(os.path.join(twin_dir, checkpoint_name(burn_in - 1))):
        return False
    if not twin_training:
        return True
    last = last_checkpoint(twin_dir)
    return last is not None and checkpoint_iteration(last) >= burn_in - 1


def start_branch(twin_dir: str, branch_dir: str, burn_in: int) -> str:
    """Copy the twin's ``model_{B-1}`` into ``branch_dir`` and name it in ``last_checkpoint``; its path."""
    name = checkpoint_name(burn_in - 1)
    os.makedirs(branch_dir, exist_ok=True)
    target = os.path.join(branch_dir, name)
    shutil.copyfile(os.path.join(twin_dir, name), target + ".tmp")
    os.replace(target + ".tmp", target)
    with open(os.path.join(branch_dir, "last_checkpoint"), "w") as f:
        f.write(name)
    return target


# ----------------------------------------------------------------------------- training


class RunProcess:
    """One ``train_net.py`` process, its output into ``output_dir/log_name``, on GPU ``gpu`` if given.

    ``threads``: its torch threads (``OMP_NUM_THREADS``); default: this environment's, else 1.
    """

    def __init__(self, command: Sequence[str], output_dir: str, gpu: Optional[int], log_name: str = "stdout.log",
                 threads: Optional[int] = None):
        env = dict(os.environ)
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        env.setdefault("OMP_NUM_THREADS", "1")
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        os.makedirs(output_dir, exist_ok=True)
        self._stdout = open(os.path.join(output_dir, log_name), "a")
        self.process = subprocess.Popen(list(command), stdout=self._stdout, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)

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


@dataclass
class Running:
    process: object
    started: float
    start_iter: int


class Scheduler:
    """Trains the unfinished runs, ``parallel`` at a time: runs from scratch in order, each branch as soon
    as its twin's burn-in checkpoint is there (before further runs from scratch).

    Args:
        runs: what to train; a branch's twin must be among them or finished in ``output``.
        output: the folder of the runs' folders (``output/<run.name>``).
        opts: config overrides for every run, after each run's own.
        parallel: processes at once (without ``launch_args``, spread one GPU each over the GPUs there are).
        launch: starts one process, ``launch(command, output_dir, gpu, log_name)``; default :class:`RunProcess`.
        train_net: the script each process runs.
        launch_args: ``train_net.py`` launch options every run gets (``--num-gpus 2``, ``--num-machines``, ...);
            ``world_size``: the processes they start in all, whose ``SOLVER.REFERENCE_WORLD_SIZE`` scaling
            (:meth:`SoftTeacherTrainer.auto_scale_workers`) gives the iterations the runs train.
        machine_rank: this machine's rank when the runs span several (``output`` on a folder they share): only
            machine 0 copies a twin's checkpoint into its branch; the others wait for that copy.

    Raises:
        ConfigError: a run's folder holds a run of another config (:func:`saved_config_differences`).
    """

    def __init__(self, runs: Sequence[Run], output: str, opts: Sequence[str], parallel: int,
                 launch: Callable[[Sequence[str], str, Optional[int], str], object] = RunProcess,
                 train_net: str = TRAIN_NET, launch_args: Sequence[str] = (), world_size: int = 1,
                 machine_rank: int = 0):
        self.output, self.opts, self.parallel, self.launch = output, list(opts), parallel, launch
        self.train_net, self.launch_args, self.machine_rank = train_net, list(launch_args), machine_rank
        # Every machine writes its processes' output into the shared run folder, each in its own file.
        self.log_name = "stdout.log" if machine_rank == 0 else f"stdout.machine{machine_rank}.log"
        self.gpus = 0 if launch_args else torch.cuda.device_count()
        self.launched = 0
        configs = {run.name: run.config(opts) for run in runs}  # as train_net.py saves them: before scaling
        self.configs = {name: SoftTeacherTrainer.auto_scale_workers(cfg, world_size) for name, cfg in configs.items()}
        self.status: Dict[str, dict] = {}
        self.running: Dict[Run, Running] = {}
        self.todo: List[Run] = []
        stale = [f"{self.folder(run)} ({'; '.join(differences)})" for run in runs
                 for differences in [saved_config_differences(self.folder(run), configs[run.name])] if differences]
        if stale:
            raise ConfigError("these run folders hold runs of another config, which would be read or resumed as "
                              "this one: delete them or choose another output folder.\n  " + "\n  ".join(stale))
        for run in sorted(runs, key=lambda r: r.twin is not None):
            if run_finished(self.folder(run), self.configs[run.name]):
                self.status[run.name] = {"state": "finished earlier"}
            else:
                self.todo.append(run)

    def folder(self, run: Run) -> str:
        return os.path.join(self.output, run.name)

    def max_iter(self, run: Run) -> int:
        return self.configs[run.name].SOLVER.MAX_ITER

    def burn_in(self, run: Run) -> int:
        return self.configs[run.name].SOFT_TEACHER.BURN_IN_ITERS

    def command(self, run: Run, resume: bool) -> List[str]:
        return ([sys.executable, self.train_net, "--config-file", run.config_file] + self.launch_args
                + (["--resume"] if resume else [])
                + ["OUTPUT_DIR", self.folder(run)] + list(run.opts) + self.opts)

    def _start(self, run: Run, how: str) -> None:
        out = self.folder(run)
        last = last_checkpoint(out)
        command = self.command(run, resume=last is not None)
        gpu = self.launched % self.gpus if self.gpus > 1 else None
        start_iter = 0 if last is None else int(min(checkpoint_iteration(last) + 1, self.max_iter(run)))
        self.running[run] = Running(self.launch(command, out, gpu, self.log_name), time.time(), start_iter)
        self.launched += 1
        self.todo.remove(run)
        print(f"start  {run.name:26s} {how}: {shlex.join(command)}", flush=True)

    def twin_checkpoint(self, run: Run) -> str:
        """The checkpoint a branch starts from, as ``<twin name>/model_<B-1>.pth``."""
        return os.path.join(run.twin.name, checkpoint_name(self.burn_in(run) - 1))

    def waiting_for(self, run: Run) -> Optional[str]:
        """What a branch waits for (None: it can start now): its twin's checkpoint, or on a machine of rank > 0
        machine 0's copy of it; starts nothing."""
        if run.twin is None or last_checkpoint(self.folder(run)) is not None:
            return None
        twin_training = run.twin in self.running or run.twin in self.todo
        if not branch_checkpoint_ready(self.folder(run.twin), self.burn_in(run), twin_training):
            return self.twin_checkpoint(run)
        if self.machine_rank > 0:
            return os.path.join(run.name, "last_checkpoint") + " (machine 0 copies the twin's checkpoint there)"
        return None

    def start_ready(self) -> None:
        """Start what can start: branches first, then runs from scratch; drop branches that never can (their twin
        is over without the checkpoint they start from)."""
        for run in [r for r in self.todo if r.twin is not None]:
            if run.twin in self.running or run.twin in self.todo or last_checkpoint(self.folder(run)) is not None:
                continue
            if not branch_checkpoint_ready(self.folder(run.twin), self.burn_in(run), twin_training=False):
                self.todo.remove(run)
                missing = self.twin_checkpoint(run)
                twin_state = self.status.get(run.twin.name, {}).get("state", "not part of this set of runs")
                self.status[run.name] = {"state": f"not started: {missing} is missing ({run.twin.name}: {twin_state})"}
        order = [r for r in self.todo if r.twin is not None] + [r for r in self.todo if r.twin is None]
        for run in order:
            if len(self.running) >= self.parallel:
                return
            if run.twin is None:
                self._start(run, "resumed" if last_checkpoint(self.folder(run)) else "from scratch")
            elif self.waiting_for(run) is None:
                if last_checkpoint(self.folder(run)) is not None:
                    self._start(run, "resumed")
                else:
                    copied = start_branch(self.folder(run.twin), self.folder(run), self.burn_in(run))
                    self._start(run, f"branched from {run.twin.name}/{os.path.basename(copied)}")

    def poll(self) -> None:
        for run, entry in list(self.running.items()):
            code = entry.process.poll()
            if code is None:
                continue
            del self.running[run]
            minutes = (time.time() - entry.started) / 60
            log = os.path.join(self.folder(run), self.log_name)
            state = "trained" if code == 0 else f"failed (exit code {code}; see {log})"
            self.status[run.name] = {"state": state, "minutes": round(minutes, 1)}
            print(f"finish {run.name:26s} {state} after {minutes:.1f} min", flush=True)

    def progress(self) -> List[str]:
        """One line per running run (iterations done/total, elapsed, ETA) and per waiting one."""
        lines = []
        for run, entry in self.running.items():
            done, total = max(last_iteration(self.folder(run)), entry.start_iter), self.max_iter(run)
            elapsed = time.time() - entry.started
            eta = "ETA unknown"
            if done > entry.start_iter:
                eta = f"ETA {(total - done) * elapsed / (done - entry.start_iter) / 60:.1f} min"
            lines.append(f"  {run.name:26s} {done}/{total} iterations, {elapsed / 60:.1f} min, {eta}")
        for run in self.todo:
            missing = self.waiting_for(run)
            lines.append(f"  {run.name:26s} " + (f"waiting for {missing}" if missing else "waiting for a slot"))
        return lines

    def run(self) -> Dict[str, dict]:
        """Train until every run finished, failed or can never start; ``{run name: {"state", "minutes"}}``.

        Prints the progress each :data:`STATUS_SECONDS`; stops the processes it started if interrupted.
        """
        last_status = time.time()
        try:
            while self.todo or self.running:
                self.start_ready()
                time.sleep(POLL_SECONDS)
                self.poll()
                if time.time() - last_status >= STATUS_SECONDS and (self.todo or self.running):
                    last_status = time.time()
                    print(f"progress at {time.strftime('%H:%M')}:\n" + "\n".join(self.progress()), flush=True)
        finally:
            for entry in self.running.values():
                entry.process.stop()
        return self.status
