#!/usr/bin/env python
"""Images per second of the unlabeled mapper (decode + teacher view + student view) in one process.

One DataLoader worker runs the mapper in one process with one thread, so this figure,
measured with ``--threads 1``, is the throughput of each worker. Images are synthetic
640x480 JPEGs (COCO's typical size, with texture so that decoding costs what a photo
costs), written to a temporary folder; views use COCO-scale settings (short side drawn
in 400-1200, long side <= 1333), as in the reference configs. The measurement is
``soft_teacher.benchmark.mapper``.

    python tools/benchmark_mapper.py                    # this project's mapper
    python tools/benchmark_mapper.py --stock-resize-flip  # with Detectron2's PIL resize / numpy flip instead
"""
import argparse

import cv2
import torch

from soft_teacher.benchmark.mapper import coco_scale_mapper, measure_mapper


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="distinct synthetic images (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=200, help="mapped images per measurement (default: %(default)s)")
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--min-size", type=int, nargs=2, default=[400, 1200], help="short side range")
    parser.add_argument("--max-size", type=int, default=1333, help="long side limit")
    parser.add_argument("--threads", type=int, default=1, help="cv2 and torch threads (a worker: 1)")
    parser.add_argument("--stock-resize-flip", action="store_true",
                        help="use Detectron2's own ResizeShortestEdge / RandomFlip (PIL resize), for comparison")
    parser.add_argument("--repeats", type=int, default=3,
                        help="measurements; the fastest, least disturbed by other load, is reported "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    mapper = coco_scale_mapper(args.min_size, args.max_size, args.stock_resize_flip)
    timing = measure_mapper(mapper, args.images, args.size, args.iters, args.repeats, args.seed)
    ms = min(timing.ms_per_image)

    print(f"unlabeled mapper, {args.size[0]}x{args.size[1]} JPEGs ({timing.mean_kib:.0f} KiB mean), short side "
          f"{args.min_size[0]}-{args.min_size[1]}, max {args.max_size}, {args.threads} thread(s), "
          f"{'stock Detectron2 resize/flip' if args.stock_resize_flip else 'cv2 resize/flip'}")
    print(f"  {ms:.1f} ms/image  ->  {1000 / ms:.1f} images/s per worker  (best of {args.repeats}: "
          + ", ".join(f"{v:.1f}" for v in timing.ms_per_image) + " ms)")
    parts = {"decode": 0.0, "teacher": 0.0, "student": 0.0}
    for (part, _), value in timing.steps_ms.items():
        parts[part] += value
    total = sum(parts.values())
    print("  split: " + ", ".join(f"{k} {v:.1f} ms ({100 * v / total:.0f}%)" for k, v in parts.items()))
    for (part, step), value in timing.steps_ms.items():
        if step:
            print(f"    {part:8s} {step:24s} {value:6.2f} ms")


if __name__ == "__main__":
    main()
