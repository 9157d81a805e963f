"""Images per second of the unlabeled mapper (decode + teacher view + student view) in one process.

One DataLoader worker runs the mapper in one process with one thread, so :func:`measure_mapper`
with one thread gives the throughput of each worker. Images are synthetic 640x480 JPEGs (COCO's
typical size, with texture so that decoding costs what a photo costs); views use COCO-scale
settings (:func:`coco_scale_mapper`). ``tools/benchmark_mapper.py`` is the command line.
"""
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
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
