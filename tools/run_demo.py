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
  what Soft Teacher adds after them (``soft_teacher.benchmark.branch_runs``).

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

Config overrides after the flags go to both arms. The demo's steps are ``soft_teacher.benchmark.demo``.
"""
import argparse
import signal
import sys
from typing import Optional, Sequence

from soft_teacher.benchmark.demo import DEFAULT_CONFIG, DEFAULT_SUPERVISED_CONFIG, DemoError, run_demo, summary_lines
from soft_teacher.engine import ConfigError


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
