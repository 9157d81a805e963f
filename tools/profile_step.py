#!/usr/bin/env python
"""Where a training step's time goes: ``torch.profiler`` over a few steps of one speed-benchmark setting.

The setting is built as ``tools/benchmark_speed.py`` builds it (R50-FPN at COCO scale, random weights,
one class made confident so that pseudo-labelling runs under load). After ``--warmup`` steps, ``--steps``
steps are profiled. Written to ``--output``: ``profile_<method>_<amp|fp32>.txt`` (per step: the profiled
wall time, the GPU's kernel time, kernel launches, stream synchronisations and copies on the host, the
time of each Soft Teacher stage, and the ops that cost most on the device and on the host) and the
Chrome trace, gzipped (open it in chrome://tracing or Perfetto). See ``soft_teacher.benchmark.profile``.

Usage::

    python tools/profile_step.py --method soft_teacher --amp on --output output/profile
    # a CPU smoke test with tiny settings:
    python tools/profile_step.py --output /tmp/profile --warmup 1 --steps 1 --amp off --num-images 4 \\
        MODEL.DEVICE cpu INPUT.MIN_SIZE_TRAIN "(96,)" INPUT.MAX_SIZE_TRAIN 128 DATALOADER.NUM_WORKERS 0
"""
import argparse
import sys
from typing import Optional, Sequence

from soft_teacher.benchmark.profile import profile_setting
from soft_teacher.benchmark.speed import CONFIGS


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
