"""The yaml configs: every one loads and builds its model; the COCO ones hold the paper's settings."""
import glob
import os
import re
import shlex

import pytest

from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import soft_teacher  # noqa: F401  (registers the meta-architecture and the datasets)
from commands import REPO, join_commands, load_tool, parse_train_net
from soft_teacher.engine import load_config

ALL_CONFIGS = sorted(
    os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
)
COCO_CONFIGS = [path for path in ALL_CONFIGS if path.startswith(os.path.join("configs", "coco", ""))]
PERCENTS = (1, 2, 5, 10)


def load(config_path, opts=()):
    return load_config(os.path.join(REPO, config_path), opts)


def header_commands(config_path):
    """The ``python ...`` commands in the leading comment block, continuation lines joined."""
    with open(os.path.join(REPO, config_path)) as f:
        header = []
        for line in f:
            if not line.startswith("#"):
                break
            header.append(line[1:])
    return join_commands(header)


def train_net_invocations(config_path):
    """``(args, cfg)`` for each ``python train_net.py`` command of a config's header."""
    return [
        parse_train_net(argv[2:])
        for argv in map(shlex.split, header_commands(config_path))
        if argv[:2] == ["python", "train_net.py"]
    ]


def tool_invocations(config_path, tool):
    """The parsed arguments of each ``python tools/<tool>.py`` command of a config's header."""
    module = load_tool(tool)
    return [
        module.parse_args(argv[2:])
        for argv in map(shlex.split, header_commands(config_path))
        if argv[:2] == ["python", f"tools/{tool}.py"]
    ]


def test_configs_are_found():
    assert len(COCO_CONFIGS) == 10  # soft teacher and supervised, 4 partial splits + full each


@pytest.mark.parametrize("config_path", ALL_CONFIGS)
def test_config_loads_and_builds_its_model(config_path):
    cfg = load(config_path, ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    assert isinstance(model, META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE))
    detectors = [model.student, model.teacher] if cfg.MODEL.META_ARCHITECTURE == "SoftTeacher" else [model]
    for detector in detectors:
        assert detector.roi_heads.box_predictor.cls_score.out_features == cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1


@pytest.mark.parametrize("config_path", COCO_CONFIGS)
def test_coco_config_header_gives_its_own_training_command(config_path):
    configs_trained = [args.config_file for args, _ in train_net_invocations(config_path)]
    assert configs_trained and set(configs_trained) == {config_path}


@pytest.mark.parametrize("config_path", ALL_CONFIGS)
def test_header_runs_only_scripts_of_this_repository(config_path):
    for command in header_commands(config_path):
        script = shlex.split(command)[1]
        assert os.path.isfile(os.path.join(REPO, script)), f"{config_path}: {command}"


@pytest.mark.parametrize("config_path", [path for path in COCO_CONFIGS if "pct" in path])
def test_partial_config_header_writes_the_splits_it_trains_on(config_path):
    (splits,) = tool_invocations(config_path, "make_coco_splits")
    for _, cfg in train_net_invocations(config_path):
        for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TRAIN_UNLABELED:
            percent, fold = re.fullmatch(r"coco_2017_train_(\d+)pct_(\d)(_unlabeled)?", name).group(1, 2)
            assert float(percent) in splits.percent and int(fold) in splits.fold


@pytest.mark.parametrize("config_path", [path for path in ALL_CONFIGS if header_commands(path)])
def test_header_commands_name_registered_datasets(config_path):
    for _, cfg in train_net_invocations(config_path):
        for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TRAIN_UNLABELED + cfg.DATASETS.TEST:
            assert name in DatasetCatalog.list(), f"{config_path} trains on unregistered dataset {name}"


def test_coco_output_dirs_are_distinct():
    output_dirs = [load(path).OUTPUT_DIR for path in COCO_CONFIGS]
    assert len(set(output_dirs)) == len(output_dirs)


def test_coco_configs_share_the_caffe_r50_fpn_detector_and_input():
    for path in COCO_CONFIGS:
        cfg = load(path)
        assert cfg.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
        assert (cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.STRIDE_IN_1X1, cfg.INPUT.FORMAT) == (50, True, "BGR")
        assert (cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD) == ([103.530, 116.280, 123.675], [1.0, 1.0, 1.0])
        assert cfg.INPUT.MIN_SIZE_TRAIN == (400, 1200) and cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range"
        assert (cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (1333, 800, 1333)
        assert (cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.WARMUP_ITERS) == (0.9, 1e-4, 500)
        assert cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.REFERENCE_WORLD_SIZE == 8
        assert cfg.DATASETS.TEST == ("coco_2017_val",)


@pytest.mark.parametrize("percent", PERCENTS)
def test_soft_teacher_partial_config_has_the_paper_schedule(percent):
    cfg = load(f"configs/coco/soft_teacher_R50_FPN_{percent}pct.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "SoftTeacher"
    assert cfg.DATASETS.TRAIN == (f"coco_2017_train_{percent}pct_1",)
    assert cfg.DATASETS.TRAIN_UNLABELED == (f"coco_2017_train_{percent}pct_1_unlabeled",)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED) == (8, 32)  # 1 + 4 per GPU
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.BASE_LR) == (180000, (120000, 160000), 0.01)
    assert cfg.SOFT_TEACHER.UNSUP_WEIGHT == 4.0


@pytest.mark.parametrize("percent", PERCENTS)
def test_supervised_partial_baseline_trains_on_the_same_labeled_split_only(percent):
    soft = load(f"configs/coco/soft_teacher_R50_FPN_{percent}pct.yaml")
    supervised = load(f"configs/coco/supervised_R50_FPN_{percent}pct.yaml")
    assert supervised.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    assert supervised.DATASETS.TRAIN == soft.DATASETS.TRAIN and supervised.DATASETS.TRAIN_UNLABELED == ()
    for key in ("IMS_PER_BATCH", "MAX_ITER", "STEPS", "BASE_LR"):
        assert supervised.SOLVER[key] == soft.SOLVER[key]


@pytest.mark.parametrize("percent", PERCENTS)
def test_fold_command_selects_fold_2_for_labeled_and_unlabeled_sets(percent):
    (_, fold1), (_, fold2) = train_net_invocations(f"configs/coco/soft_teacher_R50_FPN_{percent}pct.yaml")
    assert fold2.DATASETS.TRAIN == (f"coco_2017_train_{percent}pct_2",)
    assert fold2.DATASETS.TRAIN_UNLABELED == (f"coco_2017_train_{percent}pct_2_unlabeled",)
    assert fold2.OUTPUT_DIR != fold1.OUTPUT_DIR


@pytest.mark.parametrize("percent", PERCENTS)
def test_supervised_fold_command_selects_fold_2(percent):
    (_, fold1), (_, fold2) = train_net_invocations(f"configs/coco/supervised_R50_FPN_{percent}pct.yaml")
    assert fold2.DATASETS.TRAIN == (f"coco_2017_train_{percent}pct_2",)
    assert fold2.OUTPUT_DIR != fold1.OUTPUT_DIR


def test_soft_teacher_full_config_has_the_paper_schedule():
    cfg = load("configs/coco/soft_teacher_R50_FPN_full.yaml")
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",) and cfg.DATASETS.TRAIN_UNLABELED == ("coco_2017_unlabel",)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED) == (32, 32)  # 8 per GPU at 1:1
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS) == (720000, (480000, 640000))
    assert cfg.SOFT_TEACHER.UNSUP_WEIGHT == 2.0


def test_supervised_full_baseline_has_the_authors_schedule():
    cfg = load("configs/coco/supervised_R50_FPN_full.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and cfg.DATASETS.TRAIN == ("coco_2017_train",)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR) == (16, 0.02)
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS) == (720000, (480000, 640000))
