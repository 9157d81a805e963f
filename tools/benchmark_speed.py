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
Each setting runs in a fresh process (clean memory statistics and data workers); the timing is
``soft_teacher.benchmark.speed``.

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
import subprocess
import sys
from typing import Dict, Optional, Sequence

from soft_teacher.benchmark.checkout import CHECKOUT
from soft_teacher.benchmark.report import machine_description, write_results
from soft_teacher.benchmark.speed import (
    CONFIGS,
    markdown,
    measure,
    register_speed_sets,
    setting_name,
    speed_ratios,
)


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
