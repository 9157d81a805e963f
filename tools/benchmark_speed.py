#!/usr/bin/env python
"""Speed benchmark: one Soft Teacher iteration against one supervised iteration, R50-FPN at COCO scale.

Per GPU, Soft Teacher trains on 1 labeled + 4 unlabeled images (``configs/coco/soft_teacher_R50_FPN_10pct.yaml``)
and the supervised baseline on 5 labeled images (``configs/coco/supervised_R50_FPN_10pct.yaml``),
both at short side 800 / long side 1333, with and without mixed precision. Reported per setting:
the median milliseconds per iteration (the trainer's whole step: loading, forward, backward,
optimizer, hooks such as the teacher's EMA), the peak GPU memory, the share of the
iteration spent waiting for data, with the real mappers and ``DATALOADER.NUM_WORKERS`` workers
per stream (Detectron2's default, 4), and the aten ops dispatched in the last warm-up iteration
(on a GPU most launch a kernel, so the count roughly tracks launches; a CPU run counts them too).
Targets: Soft Teacher at most 1.5x the supervised iteration, data time under 5% of the iteration.

COCO is not needed: the images are the shapes set's, enlarged to COCO's usual 640 x 480 and stored
as JPEG (so reading and decoding cost what COCO's do), with their boxes scaled alike and COCO's 80
classes in the model. The weights are random (nothing is downloaded); the backbone's frozen
BatchNorm layers get the statistics of their inputs on two images (a random ResNet-50 without them
overflows), which changes values, not the work done. A random teacher scores every class about 1/81
and passes no threshold; so that the pseudo-labelling path (box jitter, moving boxes between views,
the unsupervised RPN and classification losses on pseudo boxes) runs under load, one class's logit
is raised in the student before the teacher copies it (``make_one_class_confident``): each proposal
then gives one confident detection, and the config's thresholds, NMS and
``TEST.DETECTIONS_PER_IMAGE`` (``--candidates``) leave at most that many candidates per image. The
report gives the pseudo boxes per unlabeled image that reached the classification loss (and the
RPN's; a random regressor is too uncertain for any to pass the regression filter). The learning rate
stays at the warm-up's first value.
Each setting runs in a fresh process (clean memory statistics and data workers): this script again, which
trains and times it with :func:`measure` (the images: :func:`register_speed_sets`; the weights:
:func:`calibrate_frozen_batchnorm` and :func:`make_one_class_confident`; the timing: :class:`StepTimer` and
:class:`OpCounter`). ``tools/profile_step.py`` builds its setting with :func:`benchmark_trainer`.

Usage::

    python tools/benchmark_speed.py --output output/benchmark_speed --benchmarks-md BENCHMARKS.md
    # a CPU smoke test with tiny settings:
    python tools/benchmark_speed.py --output /tmp/speed --iters 2 --warmup 1 --amp off \\
        MODEL.DEVICE cpu INPUT.MIN_SIZE_TRAIN "(128,)" INPUT.MAX_SIZE_TRAIN 160 DATALOADER.NUM_WORKERS 0
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.engine import HookBase
from detectron2.layers import FrozenBatchNorm2d
from detectron2.structures import BoxMode
from detectron2.utils.logger import setup_logger

from soft_teacher.data import LabeledDatasetMapper
from soft_teacher.engine import SoftTeacherTrainer, load_config, unwrap_model
from soft_teacher.modeling import copy_student_to_teacher

from benchmark_report import machine_description, machine_line, markdown_table, write_results
from branch_runs import CHECKOUT

__all__ = ["CONFIGS", "CONFIDENT_LOGIT", "OpCounter", "StepTimer", "benchmark_config", "benchmark_trainer",
           "calibrate_frozen_batchnorm", "make_one_class_confident", "markdown", "measure", "register_speed_sets",
           "setting_name", "speed_ratios", "write_coco_sized_images"]

CONFIGS = {
    "soft_teacher": os.path.join(CHECKOUT, "configs", "coco", "soft_teacher_R50_FPN_10pct.yaml"),
    "supervised": os.path.join(CHECKOUT, "configs", "coco", "supervised_R50_FPN_10pct.yaml"),
}
LABELED, UNLABELED = "speed_benchmark_labeled", "speed_benchmark_unlabeled"
COCO_SIZE = (640, 480)  # width, height of a typical COCO image
TARGET_RATIO = 1.5
# Added to one class's logit: with near-zero random weights its score is e^8 / (e^8 + 80) = 0.97 on every proposal,
# above the classification threshold (0.9), and every other class scores about 3e-4.
CONFIDENT_LOGIT = 8.0
TARGET_DATA_SHARE = 0.05


def setting_name(method: str, amp: bool) -> str:
    """``<method>_amp`` or ``<method>_fp32``: the stem of a setting's output folder and results file."""
    return f"{method}_{'amp' if amp else 'fp32'}"


def write_coco_sized_images(folder: str, num_images: int) -> List[dict]:
    """Enlarge the first shapes_train images to 640 x 480 JPEGs in ``folder``; their dataset dicts (boxes scaled)."""
    os.makedirs(folder, exist_ok=True)
    width, height = COCO_SIZE
    records = []
    for record in DatasetCatalog.get("shapes_train")[:num_images]:
        sx, sy = width / record["width"], height / record["height"]
        path = os.path.join(folder, os.path.splitext(os.path.basename(record["file_name"]))[0] + ".jpg")
        if not os.path.isfile(path):
            image = cv2.resize(cv2.imread(record["file_name"]), COCO_SIZE, interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        annotations = [
            {**ann, "bbox": [ann["bbox"][0] * sx, ann["bbox"][1] * sy, ann["bbox"][2] * sx, ann["bbox"][3] * sy],
             "bbox_mode": BoxMode.XYWH_ABS}
            for ann in record["annotations"]
        ]
        records.append({**record, "file_name": path, "width": width, "height": height, "annotations": annotations})
    return records


def register_speed_sets(folder: str, num_images: int) -> None:
    """Register the labeled and the unlabeled speed set: both the same COCO-sized images, with COCO's classes."""
    records = write_coco_sized_images(folder, num_images)
    coco_classes = _get_builtin_metadata("coco")["thing_classes"]
    for name in (LABELED, UNLABELED):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(thing_classes=coco_classes)


def calibrate_frozen_batchnorm(detector, images: List[dict]) -> None:
    """Give each FrozenBatchNorm2d of a random backbone the per-channel mean and variance of its input.

    The statistics are set just before each layer runs on ``images`` (mapped dataset dicts), so
    every layer sees inputs already normalised by the layers before it: activations keep the
    scale a trained network's have, instead of growing block after block until they overflow.
    """
    def set_statistics(module, inputs):
        module.running_mean.copy_(inputs[0].mean(dim=(0, 2, 3)))
        module.running_var.copy_(inputs[0].var(dim=(0, 2, 3)))

    layers = [m for m in detector.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    handles = [layer.register_forward_pre_hook(set_statistics) for layer in layers]
    try:
        with torch.no_grad():
            detector.backbone(detector.preprocess_image(images).tensor)
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def make_one_class_confident(detector, class_index: int = 0, logit: float = CONFIDENT_LOGIT) -> None:
    """Add ``logit`` to one class's bias in the box classifier of ``detector`` (a GeneralizedRCNN).

    A random box head spreads its scores evenly, about 1 / 81 per class, so a random teacher passes
    neither the box head's test threshold (0.05) nor the pseudo-label thresholds, and no pseudo box would
    reach the losses. With one class confident, each RPN proposal gives one detection of that class and
    the config's thresholds, NMS and ``TEST.DETECTIONS_PER_IMAGE`` decide the candidates, as for a trained
    teacher, and the box head's NMS sees one box per proposal rather than one per class and proposal.
    """
    detector.roi_heads.box_predictor.cls_score.bias[class_index] += logit


class StepTimer(HookBase):
    """Seconds of each whole training step (after every other hook), and the peak GPU memory after warm-up."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.seconds: List[float] = []
        self._start = 0.0

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def before_step(self):
        self._sync()
        if self.trainer.iter == self.warmup and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()

    def after_step(self):
        self._sync()
        if self.trainer.iter >= self.warmup:
            self.seconds.append(time.perf_counter() - self._start)


class _CountOps(TorchDispatchMode):
    """Counts the aten ops dispatched while it is active (in this thread, and in autograd's backward)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


class OpCounter(HookBase):
    """Aten ops dispatched in training step ``iteration``: the step and every hook's ``after_step`` (register it last).

    On a GPU most ops launch a kernel (views and other metadata ops do not; ops on CPU copies count too), so
    the count roughly tracks what a step of short kernels costs, and it can be taken on a CPU. Counting slows
    that step: give it an untimed one. Ops that DataLoader worker processes run are not counted.
    """

    def __init__(self, iteration: int):
        self.iteration = iteration
        self.count: Optional[int] = None
        self._mode: Optional[_CountOps] = None

    def before_step(self):
        if self.trainer.iter == self.iteration:
            self._mode = _CountOps()
            self._mode.__enter__()

    def after_step(self):
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.count, self._mode = self._mode.count, None

    def after_train(self):
        """A step that raised skips ``after_step``: leave no counting mode active in the process."""
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None


def benchmark_config(method: str, amp: bool, warmup: int, iters: int, candidates: int, opts: Sequence[str]):
    """The config of one timed setting: the COCO R50-FPN config at 800/1333, one GPU's batch.

    The learning rate is held at the warm-up's first value, BASE_LR x WARMUP_FACTOR, where a real run
    spends its first iterations. Detectron2 fits the warm-up into MAX_ITER, so the benchmark's few
    iterations would otherwise climb to the full rate within them (the 8-GPU BASE_LR, unscaled:
    ``SOLVER.REFERENCE_WORLD_SIZE 0``), and a random R50 then diverges (both Soft Teacher settings on an
    H100, at iterations 13 and 21). The rate's value does not change the work an iteration does. A
    ``SOLVER.BASE_LR`` in ``opts`` is held at its own warm-up value alike.
    """
    batch = ["SOLVER.IMS_PER_BATCH", "1", "SOLVER.IMS_PER_BATCH_UNLABELED", "4"] if method == "soft_teacher" \
        else ["SOLVER.IMS_PER_BATCH", "5"]
    cfg = load_config(CONFIGS[method], [
        "MODEL.WEIGHTS", "", "TEST.DETECTIONS_PER_IMAGE", str(candidates), "SOFT_TEACHER.BURN_IN_ITERS", "0",
        "DATASETS.TRAIN", f"('{LABELED}',)", "DATASETS.TRAIN_UNLABELED", f"('{UNLABELED}',)", "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(800,)", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice", "INPUT.MAX_SIZE_TRAIN", "1333",
        "SOLVER.REFERENCE_WORLD_SIZE", "0", "SOLVER.AMP.ENABLED", str(amp), "SOLVER.MAX_ITER", str(warmup + iters),
        "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", str(10 ** 9), "TEST.EVAL_PERIOD", "0",
    ] + batch + list(opts))
    cfg.SOLVER.BASE_LR *= cfg.SOLVER.WARMUP_FACTOR
    cfg.SOLVER.WARMUP_ITERS = 0
    return cfg


def benchmark_trainer(method: str, amp: bool, warmup: int, iters: int, candidates: int, opts: Sequence[str],
                      output_dir: str, num_images: int) -> SoftTeacherTrainer:
    """The trainer of one setting, ready to train ``warmup + iters`` iterations on the speed sets (written to
    ``output_dir/images``): frozen BatchNorm calibrated and, for Soft Teacher, one class made confident."""
    setup_logger(name="soft_teacher")
    register_speed_sets(os.path.join(output_dir, "images"), num_images)
    cfg = benchmark_config(method, amp, warmup, iters, candidates, opts)
    cfg.OUTPUT_DIR = os.path.join(output_dir, setting_name(method, amp))
    cfg.freeze()
    trainer = SoftTeacherTrainer(cfg)
    model = unwrap_model(trainer.model)
    mapper = LabeledDatasetMapper(cfg, is_train=True)
    calibrate_frozen_batchnorm(getattr(model, "student", model), [mapper(d) for d in DatasetCatalog.get(LABELED)[:2]])
    if method == "soft_teacher":
        # in the student, then copied: the EMA pulls the teacher toward the student every step, so a logit
        # raised in the teacher alone would fade
        make_one_class_confident(model.student)
        copy_student_to_teacher(model.teacher, model.student)
    return trainer


def measure(method: str, amp: bool, warmup: int, iters: int, candidates: int, opts: Sequence[str],
            output_dir: str, num_images: int) -> Dict:
    """Train ``warmup + iters`` iterations of one setting in this process; its timings."""
    trainer = benchmark_trainer(method, amp, warmup, iters, candidates, opts, output_dir, num_images)
    cfg = trainer.cfg
    timer = StepTimer(warmup)
    # both last, so that their steps hold every other hook's; the ops of the last warm-up step, untimed
    op_counter = OpCounter(warmup - 1)
    trainer.register_hooks([op_counter, timer])
    trainer.train()
    data_times = [value for value, iteration in trainer.storage.history("data_time").values() if iteration >= warmup]
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
    pseudo_history = trainer.storage.histories().get("pseudo/boxes_per_image_cls")
    pseudo = [value for value, iteration in pseudo_history.values() if iteration >= warmup] if pseudo_history else []
    return {
        "method": method,
        "amp": amp,
        "images_per_iteration": cfg.SOLVER.IMS_PER_BATCH
        + (cfg.SOLVER.IMS_PER_BATCH_UNLABELED if method == "soft_teacher" else 0),
        "timed_iterations": len(timer.seconds),
        "median_ms": 1000 * statistics.median(timer.seconds),
        "data_time_share": sum(data_times) / sum(timer.seconds),
        "peak_memory_mib": peak,
        "workers_per_stream": cfg.DATALOADER.NUM_WORKERS,
        "short_side": list(cfg.INPUT.MIN_SIZE_TRAIN),
        "long_side_max": cfg.INPUT.MAX_SIZE_TRAIN,
        "device": cfg.MODEL.DEVICE,
        "candidates_per_image": candidates if method == "soft_teacher" else None,
        # the load the pseudo-labelling ran under: mean pseudo boxes per unlabeled image reaching the
        # classification loss (score >= CLS_PSEUDO_THRESH) over the timed iterations
        "pseudo_boxes_per_image": statistics.mean(pseudo) if pseudo else None,
        # aten ops dispatched in the last warm-up iteration (None without warm-up)
        "ops_per_step": op_counter.count,
    }


def speed_ratios(settings: Sequence[Dict], precisions: Sequence[bool]) -> Dict[str, Optional[float]]:
    """``{"AMP"|"fp32": Soft Teacher median ms / supervised median ms}`` of each precision measured;
    None where a setting of that precision has no timing (it failed)."""
    ratios = {}
    for amp in precisions:
        by_method = {r["method"]: r for r in settings if r["amp"] == amp and "median_ms" in r}
        ratio = by_method["soft_teacher"]["median_ms"] / by_method["supervised"]["median_ms"] \
            if len(by_method) == 2 else None
        ratios["AMP" if amp else "fp32"] = ratio
    return ratios


def _ms(result: Dict) -> str:
    return f"{result['median_ms']:.0f}" if "median_ms" in result else result.get("error", "n/a")


def markdown(results: Dict, command: str) -> str:
    """The report: per setting the median ms, peak memory, data time and pseudo boxes; the ratios against targets."""
    rows = []
    for r in results["settings"]:
        label = "Soft Teacher, 1 labeled + 4 unlabeled" if r["method"] == "soft_teacher" else "supervised, 5 labeled"
        memory = "n/a (CPU)" if r.get("peak_memory_mib") is None else f"{r['peak_memory_mib']:.0f}"
        share = f"{100 * r['data_time_share']:.1f}%" if "data_time_share" in r else "n/a"
        pseudo = "n/a" if r.get("pseudo_boxes_per_image") is None else f"{r['pseudo_boxes_per_image']:.1f}"
        ops = "n/a" if r.get("ops_per_step") is None else f"{r['ops_per_step']:,}"
        rows.append([label, "AMP" if r["amp"] else "fp32", _ms(r), memory, share, pseudo, ops])
    ratio_lines = []
    for precision, ratio in results["ratios"].items():
        verdict = "n/a" if ratio is None else ("met" if ratio <= TARGET_RATIO else "not met")
        shown = "n/a" if ratio is None else f"{ratio:.2f}x"
        ratio_lines.append(f"- {precision}: Soft Teacher / supervised = {shown} (target <= {TARGET_RATIO}x: {verdict})")
    shares = [r["data_time_share"] for r in results["settings"] if "data_time_share" in r]
    worst = max(shares) if shares else None
    data_line = ("- data time: n/a" if worst is None else
                 f"- data time: at most {100 * worst:.1f}% of the iteration (target < {100 * TARGET_DATA_SHARE:.0f}%: "
                 f"{'met' if worst < TARGET_DATA_SHARE else 'not met'})")
    measured = next((r for r in results["settings"] if "median_ms" in r), {})
    sides = (f"short side {'/'.join(map(str, measured['short_side']))}, long side at most {measured['long_side_max']}"
             if measured else "no setting measured")
    lines = [
        "## Training speed: Soft Teacher against supervised, R50-FPN at COCO scale",
        "",
        f"One {'GPU' if measured.get('device', 'cuda') != 'cpu' else 'CPU'}; {sides}; {results['iters']} timed "
        f"iterations after {results['warmup']} warm-up; {measured.get('workers_per_stream', '?')} data workers per "
        f"stream; the random teacher made confident in one class, at most {results['candidates']} candidates per "
        "image (see `tools/benchmark_speed.py`).",
        "",
        markdown_table(
            ["iteration", "precision", "median ms / iteration", "peak GPU memory (MiB)", "data time",
             "classification pseudo boxes / unlabeled image", "aten ops / step"], rows),
        "",
        *ratio_lines,
        data_line,
        "",
        f"Machine: {machine_line(results['machine'])}.",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)

# ----------------------------------------------------------------------------- command line


def run_setting(args, method: str, amp: bool) -> Dict:
    """Run :func:`measure` for one setting in a fresh process; its result, or the error."""
    result_file = os.path.join(args.output, setting_name(method, amp) + ".json")
    command = [sys.executable, os.path.abspath(__file__), "--output", args.output, "--warmup", str(args.warmup),
               "--iters", str(args.iters), "--candidates", str(args.candidates), "--num-images", str(args.num_images),
               "--measure", method, "--amp", "on" if amp else "off"] + list(args.opts)
    print(f"measuring {method} ({'AMP' if amp else 'fp32'}): {shlex.join(command)}", flush=True)
    completed = subprocess.run(command, cwd=CHECKOUT)
    if completed.returncode != 0 or not os.path.isfile(result_file):
        return {"method": method, "amp": amp, "error": f"exit code {completed.returncode}; see the output above"}
    with open(result_file) as f:
        return json.load(f)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/benchmark_speed", help="folder of the results")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations first (default 10)")
    parser.add_argument("--iters", type=int, default=50, help="timed iterations (default 50)")
    parser.add_argument("--amp", choices=("both", "on", "off"), default="both", help="mixed precision settings")
    parser.add_argument("--candidates", type=int, default=20,
                        help="most teacher candidates per image: TEST.DETECTIONS_PER_IMAGE (default 20)")
    parser.add_argument("--num-images", type=int, default=200, help="images in the benchmark set (default 200)")
    parser.add_argument("--benchmarks-md", metavar="FILE", help="also write the table into this Markdown file")
    parser.add_argument("--measure", choices=tuple(CONFIGS), help=argparse.SUPPRESS)  # one setting, in-process
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every setting")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    if args.measure:
        amp = args.amp == "on"
        result = measure(args.measure, amp, args.warmup, args.iters, args.candidates, args.opts, args.output,
                         args.num_images)
        with open(os.path.join(args.output, setting_name(args.measure, amp) + ".json"), "w") as f:
            json.dump(result, f, indent=2)
        return 0

    command = shlex.join(["python", "tools/benchmark_speed.py"] + list(sys.argv[1:] if argv is None else argv))
    print("Preparing the images (the shapes set is generated on first use)...", flush=True)
    register_speed_sets(os.path.join(args.output, "images"), args.num_images)
    precisions = {"both": (False, True), "on": (True,), "off": (False,)}[args.amp]
    settings = [run_setting(args, method, amp) for amp in precisions for method in ("supervised", "soft_teacher")]
    results = {"settings": settings, "ratios": speed_ratios(settings, precisions), "warmup": args.warmup,
               "iters": args.iters, "candidates": args.candidates, "opts": list(args.opts), "command": command,
               "machine": machine_description()}
    write_results(args.output, results, markdown(results, command), args.benchmarks_md, "speed")
    return 0 if all("median_ms" in r for r in settings) else 1


if __name__ == "__main__":
    sys.exit(main())
