"""Plain helpers shared by the tests (fixtures live in conftest.py)."""
import contextlib
import copy
import importlib.util
import itertools
import json
import logging
import os
import re
import subprocess
import sys
from typing import Iterable, Iterator, List, Sequence, Tuple

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.engine import default_argument_parser
from detectron2.utils.events import get_event_storage
from soft_teacher.config import get_cfg
from soft_teacher.data import register_custom_datasets
from soft_teacher.engine import SoftTeacherTrainer, load_config

from plot_metrics import metrics_records  # tools/plot_metrics.py: conftest.py puts tools/ on sys.path

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# For ``pytest.mark.parametrize("device", DEVICES)``: a test that runs on the CPU, and on CUDA where there is one.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]

# ---------------------------------------------------------------------------------------------
# Configs


def make_tiny_cfg(num_classes: int = 3):
    """A SoftTeacher config with a ResNet-18-FPN sized for 64-128 px images on a CPU.

    Thresholds and the algorithm's keys keep the paper's values; only sizes shrink.
    """
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "SoftTeacher"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.INPUT.MIN_SIZE_TRAIN = (64, 96)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    cfg.INPUT.MAX_SIZE_TRAIN = 128
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.INPUT.MAX_SIZE_TEST = 128
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 2
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = 4
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SEED = 7
    return cfg


def tiny_semisup_cfg(root, name="tiny", test_categories=None):
    """:func:`make_tiny_cfg` on tiny 64x64 sets from :func:`write_coco`, registered through ``DATASETS.CUSTOM_COCO``:
    ``{name}_labeled`` (3 images), ``{name}_unlabeled`` (4, annotations hidden), ``{name}_test`` (2).

    Score thresholds are 0 (and uncertainty 1): an untrained teacher's detections are pseudo boxes for every loss.
    """
    root = str(root)
    splits = (("labeled", 3, CATEGORIES), ("unlabeled", 4, CATEGORIES), ("test", 2, test_categories or CATEGORIES))
    cfg = make_tiny_cfg(num_classes=len(CATEGORIES))
    cfg.OUTPUT_DIR = os.path.join(root, "output")
    cfg.DATASETS.CUSTOM_COCO = tuple(
        (f"{name}_{split}", *write_coco(os.path.join(root, split), [(64, 64)] * count, categories))
        for split, count, categories in splits
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
    register_custom_datasets(cfg)  # as load_config does; the training loaders would, but evaluation alone does not
    return cfg


def write_config(cfg, path):
    """Dump ``cfg`` as a yaml config file; return its path."""
    with open(path, "w") as f:
        f.write(cfg.dump())
    return str(path)


# ---------------------------------------------------------------------------------------------
# Tiny datasets on disk: dark images with one bright box.

CATEGORIES = ("cat", "dog", "bird")
BACKGROUND, FOREGROUND = 30, 230


def box_image(height: int, width: int, box: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8 dark image with the integer box ``[x0, y0, x1, y1)`` filled bright."""
    image = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = FOREGROUND
    return image


def bright_extent(image: np.ndarray) -> np.ndarray:
    """XYXY continuous box around the pixels of an (H, W, 3) image brighter than mid-way between the two levels."""
    ys, xs = np.nonzero(image.mean(axis=2) > (BACKGROUND + FOREGROUND) / 2)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def write_coco(folder: str, sizes: List[Tuple[int, int]], categories=CATEGORIES, bbox=None) -> Tuple[str, str]:
    """PNG images of the given (height, width) with one box each, and their COCO json; returns (json, image_root).

    Image ``i`` holds the box ``[w/4, h/4, w/2, h/2]`` (XYWH) of category ``i % len(categories)``
    unless ``bbox`` gives the XYWH box of every image.
    """
    image_root = os.path.join(folder, "images")
    os.makedirs(image_root, exist_ok=True)
    images, annotations = [], []
    for i, (h, w) in enumerate(sizes):
        xywh = list(bbox) if bbox is not None else [w // 4, h // 4, w // 2, h // 2]
        x, y, bw, bh = xywh
        name = f"{i:04d}.png"
        cv2.imwrite(os.path.join(image_root, name), box_image(h, w, [x, y, x + max(bw, 0), y + max(bh, 0)]))
        images.append({"id": 100 + i, "file_name": name, "height": h, "width": w})
        annotations.append({"id": 1 + i, "image_id": 100 + i, "category_id": 1 + i % len(categories),
                            "bbox": xywh, "area": abs(bw * bh), "iscrowd": 0})
    json_file = os.path.join(folder, "instances.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1 + i, "name": c} for i, c in enumerate(categories)]}, f)
    return json_file, image_root


def write_folder(folder: str, sizes: List[Tuple[int, int]]) -> List[str]:
    """JPEG images of the given (height, width), each with a centred box; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = os.path.join(folder, f"img_{i:03d}.jpg")
        cv2.imwrite(path, box_image(h, w, [w // 4, h // 4, 3 * w // 4, 3 * h // 4]))
        paths.append(path)
    return paths


def write_metrics(output_dir, records):
    """Write ``records`` as ``output_dir/metrics.json`` (one JSON object per line, as Detectron2 does); the folder."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    return str(output_dir)


def read_metrics(output_dir):
    """The rows of ``output_dir/metrics.json``, in file order (the package's reader)."""
    return metrics_records(output_dir)


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
# Scripts and the commands docs show (README.md, config headers).


def repo_script(script, args, launch=subprocess.run, stderr=subprocess.STDOUT, **kwargs):
    """``launch`` (subprocess.run or Popen) ``python <script> args`` in the repository root with one OpenMP
    thread; stdout and stderr together in ``.stdout``, or with ``stderr=subprocess.PIPE`` stderr in ``.stderr``."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return launch([sys.executable, os.path.join(REPO_ROOT, script), *args], cwd=REPO_ROOT, env=env,
                  stdout=subprocess.PIPE, stderr=stderr, text=True, **kwargs)


def run_train_net(args, timeout=240) -> subprocess.CompletedProcess:
    """Run ``python train_net.py args`` (see :func:`repo_script`)."""
    return repo_script("train_net.py", list(args), timeout=timeout)


def run_tool(tool: str, argv: Sequence[str], timeout: int = 240,
             stderr=subprocess.STDOUT) -> subprocess.CompletedProcess:
    """Run ``python tools/<tool>.py argv`` (see :func:`repo_script`)."""
    return repo_script(os.path.join("tools", f"{tool}.py"), list(argv), stderr=stderr, timeout=timeout)


def load_tool(tool: str):
    """The module ``tools/<tool>.py`` (the one imported already, if it is), named by a command: for parsing the
    commands docs show (README.md, config headers) with the tool's own argument parser, and for
    ``tools/install.py``. Elsewhere a test imports a tool's module by its plain name (``conftest.py`` puts
    ``tools/`` on ``sys.path``: ``import benchmark_accuracy``) or runs the tool with :func:`run_tool`."""
    path = os.path.join(REPO_ROOT, "tools", f"{tool}.py")
    imported = sys.modules.get(tool)
    if imported is not None and os.path.abspath(getattr(imported, "__file__", None) or "") == path:
        return imported  # one copy of a module, whose globals the tests may patch
    spec = importlib.util.spec_from_file_location(tool, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[tool] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


# The shell variables of the loops docs show (README's five folds), each set to one of its values.
LOOP_VALUES = {"FOLD": "2"}


def join_commands(lines: Iterable[str], prefixes=("python ",)) -> List[str]:
    """Commands that start with one of ``prefixes``, with ``\\``-continued lines joined and the loops' shell
    variables (``$FOLD``, ``${FOLD}``) set to their :data:`LOOP_VALUES`."""
    commands, current = [], None
    for line in lines:
        line = line.strip()
        if current is None and line.startswith(prefixes):
            current = line
        elif current is not None:
            current = current[:-1].rstrip() + " " + line
        if current is not None and not current.endswith("\\"):
            commands.append(re.sub(r"\$\{?(\w+)\}?", lambda m: LOOP_VALUES[m.group(1)], current.split(" #")[0].strip()))
            current = None
    return commands


def parse_train_net(argv: List[str]):
    """``(args, cfg)`` of ``train_net.py`` arguments, as train_net.py reads them."""
    args = default_argument_parser().parse_args(argv)
    return args, load_config(os.path.join(REPO_ROOT, args.config_file), args.opts)


# ---------------------------------------------------------------------------------------------
# Logs


@contextlib.contextmanager
def captured_logs(*logger_names: str, level: int = logging.INFO) -> Iterator[List[logging.LogRecord]]:
    """The records that the named loggers log at ``level`` or above, collected in a list.

    The handler sits on the loggers themselves, not on the root logger where ``caplog`` listens:
    Detectron2's ``setup_logger`` (run by train_net.py and the tools, some called in-process) stops propagation.
    """
    records: List[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(min(level, logger.getEffectiveLevel()))
    try:
        yield records
    finally:
        for logger, old_level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(old_level)
