#!/usr/bin/env python
"""Where a training step's time goes: ``torch.profiler`` over a few steps of one speed-benchmark setting.

The setting is built as ``tools/benchmark_speed.py`` builds it (R50-FPN at COCO scale, random weights,
one class made confident so that pseudo-labelling runs under load; its ``benchmark_trainer``). After
``--warmup`` steps, ``--steps`` steps are profiled. Written to ``--output``: ``profile_<method>_<amp|fp32>.txt``
and the Chrome trace, gzipped (open it in chrome://tracing or Perfetto).

A GPU step is bound by the device or by the host. The report tells which: the kernels' time per step
against the step's wall time (on a GPU; the profiler slows the host, so the wall time is the profiled
one), and what keeps the host busy: kernel launches, stream synchronisations (each waits for the GPU
to finish the work queued so far, which then idles until the host queues more) and copies, per step.
The Soft Teacher stages run as named regions (:data:`REGIONS`), each with its host time and the
device time of the kernels it launched; two tables list the ops that cost most on the device and on
the host.

Usage::

    python tools/profile_step.py --method soft_teacher --amp on --output output/profile
    # a CPU smoke test with tiny settings:
    python tools/profile_step.py --output /tmp/profile --warmup 1 --steps 1 --amp off --num-images 4 \\
        MODEL.DEVICE cpu INPUT.MIN_SIZE_TRAIN "(96,)" INPUT.MAX_SIZE_TRAIN 128 DATALOADER.NUM_WORKERS 0
"""
import argparse
import contextlib
import functools
import gzip
import importlib
import os
import shutil
import sys
import time
from typing import Iterator, List, Optional, Sequence

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.engine import HookBase

from benchmark_speed import CONFIGS, benchmark_trainer, setting_name

__all__ = ["REGIONS", "StepProfiler", "named_regions", "profile_setting", "report"]

# (module, attribute, region): the stages of a Soft Teacher step, each called once per step after the burn-in
REGIONS = (
    ("soft_teacher.modeling.soft_teacher", "SoftTeacher.unsupervised_losses", "unsupervised_losses"),
    ("soft_teacher.modeling.soft_teacher", "teacher_pseudo_labels", "teacher_pseudo_labels"),
    ("soft_teacher.modeling.pseudo_labels", "teacher_detections", "teacher_detections"),
    ("soft_teacher.modeling.pseudo_labels", "jitter_uncertainty", "jitter_uncertainty"),
    ("soft_teacher.diagnostics", "PseudoLabelDiagnostics.__call__", "pseudo_label_statistics"),
    ("soft_teacher.modeling.soft_teacher", "unsup_roi_cls_loss", "unsup_roi_cls_loss"),
    ("soft_teacher.modeling.soft_teacher", "unsup_roi_reg_loss", "unsup_roi_reg_loss"),
    ("soft_teacher.engine.hooks", "ema_update", "ema_update"),
)
STEP_REGION = "training_step"
HOST_CALLS = ("cudaLaunchKernel", "cudaStreamSynchronize", "cudaMemcpyAsync")


@contextlib.contextmanager
def named_regions(regions: Sequence = REGIONS) -> Iterator[None]:
    """Within the block, each function of ``regions`` runs inside ``record_function(region)``; restored after."""
    patched = []
    try:
        for module_name, path, region in regions:
            owner = importlib.import_module(module_name)
            *owners, name = path.split(".")
            for attribute in owners:
                owner = getattr(owner, attribute)
            original = getattr(owner, name)

            def wrapper(*args, _original=original, _region=region, **kwargs):
                with record_function(_region):
                    return _original(*args, **kwargs)

            setattr(owner, name, functools.wraps(original)(wrapper))
            patched.append((owner, name, original))
        yield
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


class StepProfiler(HookBase):
    """Profiles training steps ``start`` to ``start + steps - 1``; afterwards :attr:`profiler` holds the result
    and :attr:`wall_seconds` their time. Register it last: each step's region then ends after every other
    hook's ``after_step`` (their ``before_step`` runs before it begins)."""

    def __init__(self, start: int, steps: int):
        self.start, self.steps = start, steps
        self.profiler: Optional[profile] = None
        self.wall_seconds: Optional[float] = None
        self._active: Optional[profile] = None
        self._step_region = None

    def before_step(self):
        if self.trainer.iter == self.start:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self._active = profile(activities=activities)
            self._active.__enter__()
            self._began = time.perf_counter()
        if self._active is not None:
            self._step_region = record_function(STEP_REGION)
            self._step_region.__enter__()

    def after_step(self):
        if self._active is None:
            return
        self._step_region.__exit__(None, None, None)
        if self.trainer.iter == self.start + self.steps - 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.wall_seconds = time.perf_counter() - self._began
            self._active.__exit__(None, None, None)
            self.profiler, self._active = self._active, None

    def after_train(self):
        """A step that raised skips ``after_step``: stop profiling anyway."""
        if self._active is not None:
            self._active.__exit__(None, None, None)
            self._active = None


def _device_time(event) -> float:
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)


def _device_total(event) -> float:
    return getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)


def report(profiler: profile, steps: int, wall_seconds: float, label: str, top: int = 25) -> str:
    """The text report of ``steps`` profiled steps: per step, in milliseconds or counts."""
    events = profiler.key_averages()
    kernels_us = sum(_device_time(e) for e in events
                     if e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False))
    lines = [
        f"{label}: {steps} profiled steps",
        f"wall time (profiled): {1000 * wall_seconds / steps:.1f} ms/step",
        f"device kernel time: {kernels_us / 1000 / steps:.1f} ms/step"
        + ("" if torch.cuda.is_available() else " (no GPU)"),
    ]
    for name in HOST_CALLS:
        found = [e for e in events if e.key == name]
        count = found[0].count / steps if found else 0
        host_ms = found[0].cpu_time_total / 1000 / steps if found else 0.0
        lines.append(f"{name}: {count:.1f} calls/step, {host_ms:.1f} ms/step on the host")
    lines += ["", "region | calls/step | host ms/step | device ms/step of its kernels"]
    names = {STEP_REGION} | {region for _, _, region in REGIONS}
    host_rows = [e for e in events if e.key in names and e.device_type == DeviceType.CPU]
    for e in sorted(host_rows, key=lambda e: -e.cpu_time_total):
        lines.append(f"{e.key} | {e.count / steps:.1f} | {e.cpu_time_total / 1000 / steps:.1f} | "
                     f"{_device_total(e) / 1000 / steps:.1f}")
    device_key = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    for key in ((device_key,) if torch.cuda.is_available() else ()) + ("self_cpu_time_total",):
        lines += ["", f"ops by {key}, over all {steps} steps:",
                  events.table(sort_by=key, row_limit=top, max_name_column_width=60)]
    return "\n".join(lines) + "\n"


def profile_setting(method: str, amp: bool, warmup: int, steps: int, candidates: int, opts: Sequence[str],
                    output_dir: str, num_images: int) -> List[str]:
    """Train ``warmup`` steps of a speed-benchmark setting, profile the next ``steps``; write the report and
    the Chrome trace (gzipped) to ``output_dir``; their paths."""
    trainer = benchmark_trainer(method, amp, warmup, steps, candidates, opts, output_dir, num_images)
    profiler = StepProfiler(warmup, steps)
    trainer.register_hooks([profiler])
    with named_regions():
        trainer.train()
    if profiler.profiler is None:
        raise RuntimeError(f"No step was profiled: training stopped before iteration {warmup + steps - 1}.")
    name = setting_name(method, amp)
    report_path = os.path.join(output_dir, f"profile_{name}.txt")
    with open(report_path, "w") as f:
        f.write(report(profiler.profiler, steps, profiler.wall_seconds, name))
    trace = os.path.join(output_dir, f"profile_{name}_trace.json")
    profiler.profiler.export_chrome_trace(trace)
    with open(trace, "rb") as src, gzip.open(trace + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.remove(trace)
    return [report_path, trace + ".gz"]

# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=tuple(CONFIGS), default="soft_teacher", help="the setting's method")
    parser.add_argument("--amp", choices=("on", "off"), default="on", help="mixed precision (default on)")
    parser.add_argument("--output", default="output/profile", help="folder of the report and the trace")
    parser.add_argument("--warmup", type=int, default=8, help="steps before profiling (default 8)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (default 3)")
    parser.add_argument("--candidates", type=int, default=20,
                        help="most teacher candidates per image: TEST.DETECTIONS_PER_IMAGE (default 20)")
    parser.add_argument("--num-images", type=int, default=40, help="images in the benchmark set (default 40)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    paths = profile_setting(args.method, args.amp == "on", args.warmup, args.steps, args.candidates, args.opts,
                            args.output, args.num_images)
    with open(paths[0]) as f:
        print("".join(f.readlines()[:20]))
    print("Wrote " + " and ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
