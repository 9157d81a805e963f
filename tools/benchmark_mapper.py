#!/usr/bin/env python
"""Images per second of the unlabeled mapper (decode + teacher view + student view) in one process.

One DataLoader worker runs the mapper in one process with one thread, so this figure,
measured with ``--threads 1``, is the throughput of each worker. Images are synthetic
640x480 JPEGs (COCO's typical size, with texture so that decoding costs what a photo
costs: :func:`write_synthetic_jpegs`), written to a temporary folder; views use COCO-scale
settings (short side drawn in 400-1200, long side <= 1333), as in the reference configs
(:func:`coco_scale_mapper`). The measurement is :func:`measure_mapper`.

Usage::

    python tools/benchmark_mapper.py                    # this project's mapper
    python tools/benchmark_mapper.py --stock-resize-flip  # with Detectron2's PIL resize / numpy flip instead
"""
import argparse
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from soft_teacher.config import get_cfg
from soft_teacher.data.mappers import UnlabeledDatasetMapper, build_view_augmentations, read_image

__all__ = ["MapperTiming", "coco_scale_mapper", "measure_mapper", "stock_augmentations", "time_steps",
           "write_synthetic_jpegs"]


@dataclass
class MapperTiming:
    """What :func:`measure_mapper` measured.

    Attributes:
        ms_per_image: mean ms per mapped image of each repeat.
        steps_ms: ``{(part, step): mean ms}``, the fastest repeat of each: part ``"decode"`` (step ``""``),
            ``"teacher"`` or ``"student"`` (step: the augmentation's class name, or ``"to CHW tensor"``).
        mean_kib: mean size of the JPEGs.
    """

    ms_per_image: List[float]
    steps_ms: Dict[Tuple[str, str], float]
    mean_kib: float


def write_synthetic_jpegs(folder: str, count: int, width: int, height: int, rng: np.random.Generator):
    """Textured JPEGs (smooth colour fields, shapes, fine noise) of about the size of COCO's photos."""
    files = []
    for i in range(count):
        image = cv2.resize(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8), (width, height),
                           interpolation=cv2.INTER_CUBIC)
        for _ in range(12):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.circle(image, (x, y), int(rng.integers(10, 120)), color, thickness=-1)
        image = cv2.add(image, rng.integers(0, 24, image.shape, dtype=np.uint8))
        path = os.path.join(folder, f"{i:06d}.jpg")
        cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        files.append(path)
    return files


def stock_augmentations(cfg, view: str):
    """The view's augmentations with Detectron2's stock resize and flip (its ``build_augmentation``) first."""
    return utils.build_augmentation(cfg, is_train=True) + build_view_augmentations(cfg, view)[2:]


def coco_scale_mapper(min_size: Sequence[int], max_size: int, stock_resize_flip: bool) -> UnlabeledDatasetMapper:
    """The unlabeled mapper with short sides drawn in ``min_size`` (a range) and long sides <= ``max_size``.

    With ``stock_resize_flip``, each view resizes and flips with Detectron2's own ``ResizeShortestEdge``
    and ``RandomFlip`` (PIL resize), for comparison.
    """
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = tuple(min_size)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    cfg.INPUT.MAX_SIZE_TRAIN = max_size
    if stock_resize_flip:
        return UnlabeledDatasetMapper(teacher_augmentations=stock_augmentations(cfg, "teacher"),
                                      student_augmentations=stock_augmentations(cfg, "student"),
                                      image_format=cfg.INPUT.FORMAT)
    return UnlabeledDatasetMapper(cfg)


def time_steps(mapper: UnlabeledDatasetMapper, dicts, iters: int):
    """Mean ms of decoding and of each augmentation step of both views."""
    totals = defaultdict(float)
    for i in range(iters):
        record = dicts[i % len(dicts)]
        start = time.perf_counter()
        image = read_image(record["file_name"], mapper.image_format)
        totals[("decode", "")] += time.perf_counter() - start
        for view, augs in (("teacher", mapper.teacher_augmentations), ("student", mapper.student_augmentations)):
            aug_input = T.AugInput(image)
            for aug in augs.augs:
                start = time.perf_counter()
                aug(aug_input)
                totals[(view, type(aug).__name__)] += time.perf_counter() - start
            start = time.perf_counter()
            torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
            totals[(view, "to CHW tensor")] += time.perf_counter() - start
    return {k: 1000 * v / iters for k, v in totals.items()}


def measure_mapper(mapper: UnlabeledDatasetMapper, num_images: int, size: Sequence[int], iters: int, repeats: int,
                   seed: int) -> MapperTiming:
    """Map ``iters`` images (cycling over ``num_images`` synthetic ``size = (W, H)`` JPEGs in a temporary
    folder) ``repeats`` times after 5 warm-up images, timing the whole mapper and then each of its steps.

    ``seed`` seeds the images and numpy's global RNG, which the augmentations draw from.
    """
    np.random.seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        files = write_synthetic_jpegs(folder, num_images, *size, np.random.default_rng(seed))
        dicts = [{"file_name": f, "image_id": i} for i, f in enumerate(files)]
        kib = np.mean([os.path.getsize(f) for f in files]) / 1024
        for record in dicts[:5]:  # warm-up
            mapper(record)
        runs_ms, runs_steps = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(iters):
                mapper(dicts[i % len(dicts)])
            runs_ms.append(1000 * (time.perf_counter() - start) / iters)
            runs_steps.append(time_steps(mapper, dicts, iters))
    steps = {k: min(run[k] for run in runs_steps) for k in runs_steps[0]}
    return MapperTiming(runs_ms, steps, float(kib))

# ----------------------------------------------------------------------------- command line


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
