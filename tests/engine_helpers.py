"""Shared by the engine tests: a stand-in teacher-student model and trainer, a tiny COCO-format
dataset on disk, and a runner for train_net.py."""
import copy
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from detectron2.utils.events import get_event_storage
from soft_teacher.data import register_custom_datasets
from soft_teacher.engine import SoftTeacherTrainer
from soft_teacher.utils.metrics import metrics_records

from conftest import make_tiny_cfg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------
# Stand-ins: a deterministic teacher-student regressor that trains in milliseconds.


class TinyDetector(nn.Module):
    """Stand-in for GeneralizedRCNN: a two-layer regressor from (N, 2) points to (N, 1)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, points):
        return self.head(torch.tanh(self.backbone(points)))


class TwinRegressor(nn.Module):
    """Stand-in for SoftTeacher: a student and its teacher (a copy), losses like the real model's.

    It loads teacher-student state dicts only: plain detector weights reach both models through
    SoftTeacher's own load hook, which this stand-in lacks.

    ``sup_loss_fit``: the student's squared error on labeled points; ``unsup_loss_consistency``:
    its squared distance to the teacher's predictions on unlabeled points (so the teacher steers
    training). ``nan_at_iter``: that iteration's unsupervised loss is NaN.
    """

    def __init__(self, nan_at_iter=None):
        super().__init__()
        self.student = TinyDetector()
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.nan_at_iter = nan_at_iter

    def forward(self, batch):
        points, targets = batch["labeled"]
        unlabeled = batch["unlabeled"]
        with torch.no_grad():
            teacher_targets = self.teacher(unlabeled)
        unsup = F.mse_loss(self.student(unlabeled), teacher_targets)
        if get_event_storage().iter == self.nan_at_iter:
            unsup = unsup * float("nan")
        return {"sup_loss_fit": F.mse_loss(self.student(points), targets), "unsup_loss_consistency": unsup}


def fixed_batch():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(8, 2, generator=generator)
    return {"labeled": (points, points.sum(dim=1, keepdim=True)), "unlabeled": torch.randn(8, 2, generator=generator)}


class StandInTrainer(SoftTeacherTrainer):
    """SoftTeacherTrainer on :class:`TwinRegressor` and a loader repeating :func:`fixed_batch`."""

    nan_at_iter = None

    @classmethod
    def build_model(cls, cfg):
        torch.manual_seed(0)
        return TwinRegressor(cls.nan_at_iter)

    @classmethod
    def build_train_loader(cls, cfg):
        return itertools.repeat(fixed_batch())


def stand_in_cfg(output_dir, max_iter=6):
    """A config for :class:`StandInTrainer`: SGD with momentum, warm-up and a step, EMA 0.5, no test set."""
    cfg = make_tiny_cfg()
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.STEPS = (3,)
    cfg.SOLVER.CHECKPOINT_PERIOD = 3
    cfg.SOFT_TEACHER.EMA_MOMENTUM = 0.5
    return cfg


# ---------------------------------------------------------------------------------------------
# A tiny COCO-format dataset: 96x96 images with coloured rectangles of 3 classes.

CLASSES = ("red", "green", "blue")
_COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))


def write_tiny_coco(folder, num_images, seed, classes=CLASSES, size=64):
    """Write ``num_images`` PNGs and ``annotations.json`` under ``folder``; return the json path.

    Each image has two filled rectangles of random classes on a grey background.
    """
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        pixels = np.full((size, size, 3), 128, dtype=np.uint8)
        for _ in range(2):
            w, h = rng.randint(size // 4, size // 2, size=2)
            x, y = rng.randint(0, size - w), rng.randint(0, size - h)
            category = int(rng.randint(len(classes)))
            pixels[y:y + h, x:x + w] = _COLOURS[category % len(_COLOURS)]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category + 1,
                "bbox": [int(x), int(y), int(w), int(h)], "area": int(w * h), "iscrowd": 0,
            })
        file_name = f"{image_id:03d}.png"
        Image.fromarray(pixels).save(os.path.join(folder, file_name))
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    json_file = os.path.join(folder, "annotations.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return json_file


def tiny_semisup_cfg(root, name="tiny", test_classes=CLASSES):
    """The conftest tiny config on a tiny COCO-format set of 64x64 images: 3 labeled images,
    4 unlabeled (with hidden annotations), 2 test images, registered through ``DATASETS.CUSTOM_COCO``.

    Score thresholds are 0 (and uncertainty 1) so that an untrained teacher's detections,
    whatever their random scores, are pseudo boxes for every loss in every iteration.
    """
    root = str(root)
    labeled = write_tiny_coco(os.path.join(root, "labeled"), 3, seed=1)
    unlabeled = write_tiny_coco(os.path.join(root, "unlabeled"), 4, seed=2)
    test = write_tiny_coco(os.path.join(root, "test"), 2, seed=3, classes=test_classes)
    cfg = make_tiny_cfg(num_classes=len(CLASSES))
    cfg.OUTPUT_DIR = os.path.join(root, "output")
    cfg.DATASETS.CUSTOM_COCO = tuple(
        (f"{name}_{split}", json_file, os.path.dirname(json_file))
        for split, json_file in (("labeled", labeled), ("unlabeled", unlabeled), ("test", test))
    )
    cfg.DATASETS.TRAIN = (f"{name}_labeled",)
    cfg.DATASETS.TRAIN_UNLABELED = (f"{name}_unlabeled",)
    cfg.DATASETS.TEST = (f"{name}_test",)
    cfg.SOLVER.IMS_PER_BATCH = 1
    cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 2
    cfg.SOLVER.MAX_ITER = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (64, 64)  # one image size: fewer first-call kernel set-ups
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 64
    cfg.TEST.DETECTIONS_PER_IMAGE = 10
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.SOFT_TEACHER.INITIAL_SCORE_THRESH = 0.0
    cfg.SOFT_TEACHER.RPN_PSEUDO_THRESH = 0.0
    cfg.SOFT_TEACHER.CLS_PSEUDO_THRESH = 0.0
    cfg.SOFT_TEACHER.REG_UNCERTAINTY_THRESH = 1.0
    cfg.SOFT_TEACHER.JITTER_TIMES = 2
    register_custom_datasets(cfg)  # as load_config does for a config file
    return cfg


def write_config(cfg, path):
    """Dump ``cfg`` as a yaml config file; return its path."""
    with open(path, "w") as f:
        f.write(cfg.dump())
    return str(path)


def write_metrics(output_dir, records):
    """Write ``records`` as ``output_dir/metrics.json`` (one JSON object per line, as Detectron2 does); the folder."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    return str(output_dir)


def read_metrics(output_dir):
    """The rows of ``output_dir/metrics.json``, in file order (the package's reader)."""
    return metrics_records(output_dir)


def run_train_net(args, timeout=240, script="train_net.py"):
    """Run a repository script in a subprocess; return the CompletedProcess (stdout+stderr in .stdout)."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *args],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )
