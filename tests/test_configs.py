"""The yaml configs: every one loads and builds its model; the COCO ones hold the paper's settings.

How to run the COCO configs is README.md's "Training on COCO" section (each COCO config's one-line
header points there): its commands are checked here against the configs.
"""
import fnmatch
import glob
import itertools
import os
import re
import shlex

import pytest

from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import soft_teacher  # noqa: F401  (registers the meta-architecture and the datasets)
from helpers import REPO_ROOT, join_commands, load_tool, parse_train_net
from soft_teacher.config import get_cfg
from soft_teacher.engine import load_config

ALL_CONFIGS = sorted(
    os.path.relpath(path, REPO_ROOT)
    for path in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True)
)
COCO_CONFIGS = [path for path in ALL_CONFIGS if path.startswith(os.path.join("configs", "coco", ""))]
PERCENTS = (1, 2, 5, 10)
PARTIAL_SPLIT = re.compile(r"coco_2017_train_(\d+)pct_(\d)(_unlabeled)?")
with open(os.path.join(REPO_ROOT, "README.md")) as f:
    README = f.read()


def load(config_path, opts=()):
    return load_config(os.path.join(REPO_ROOT, config_path), opts)


def header_commands(config_path):
    """The ``python ...`` commands in the leading comment block, continuation lines joined."""
    with open(os.path.join(REPO_ROOT, config_path)) as f:
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


def readme_section(title):
    """The text of README.md's ``## <title>`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f'README.md has no section "{title}"'
    return match.group(1)


def coco_section_commands():
    """The ``python ...`` commands of README's COCO section, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)```", readme_section("Training on COCO"), flags=re.S)
    return [shlex.split(c) for c in join_commands(line for block in blocks for line in block.splitlines())]


def coco_section_train_net():
    """``(args, cfg)`` of each ``python train_net.py`` command of README's COCO section."""
    return [parse_train_net(argv[2:]) for argv in coco_section_commands() if argv[:2] == ["python", "train_net.py"]]


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
def test_coco_config_header_is_one_line_naming_a_readme_section(config_path):
    with open(os.path.join(REPO_ROOT, config_path)) as f:
        header = list(itertools.takewhile(lambda line: line.startswith("#"), f))
    assert len(header) == 1, f"{config_path}: the how-to belongs in README.md, not in the header"
    (section,) = re.findall(r'README\.md, "([^"]+)"', header[0])
    readme_section(section)


def test_readme_coco_section_names_every_coco_config():
    named = re.findall(r"`(configs/coco/[^`]+\.yaml)`", readme_section("Training on COCO"))
    named += [args.config_file for args, _ in coco_section_train_net()]
    for path in COCO_CONFIGS:
        assert any(fnmatch.fnmatch(path, pattern) for pattern in named), f"README's COCO section never names {path}"


@pytest.mark.parametrize("config_path", ALL_CONFIGS)
def test_header_runs_only_scripts_of_this_repository(config_path):
    for command in header_commands(config_path):
        script = shlex.split(command)[1]
        assert os.path.isfile(os.path.join(REPO_ROOT, script)), f"{config_path}: {command}"


def test_readme_coco_section_writes_the_splits_that_configs_and_commands_train_on():
    module = load_tool("make_coco_splits")
    (splits,) = [
        module.parse_args(argv[2:])
        for argv in coco_section_commands()
        if argv[:2] == ["python", "tools/make_coco_splits.py"]
    ]
    cfgs = [load(path) for path in COCO_CONFIGS if "pct" in path] + [cfg for _, cfg in coco_section_train_net()]
    names = [name for cfg in cfgs for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TRAIN_UNLABELED]
    partial = [PARTIAL_SPLIT.fullmatch(name) for name in names if PARTIAL_SPLIT.fullmatch(name)]
    assert len(partial) >= 2 * len(PERCENTS)
    for match in partial:
        assert float(match.group(1)) in splits.percent and int(match.group(2)) in splits.fold, match.group(0)


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
    """The paper's SOFT_TEACHER values are config.py's defaults (tests/test_config.py); no COCO yaml repeats them."""
    cfg = load(f"configs/coco/soft_teacher_R50_FPN_{percent}pct.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "SoftTeacher"
    assert cfg.DATASETS.TRAIN == (f"coco_2017_train_{percent}pct_1",)
    assert cfg.DATASETS.TRAIN_UNLABELED == (f"coco_2017_train_{percent}pct_1_unlabeled",)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED) == (8, 32)  # 1 + 4 per GPU
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.BASE_LR) == (180000, (120000, 160000), 0.01)
    assert cfg.SOFT_TEACHER == get_cfg().SOFT_TEACHER and cfg.SOFT_TEACHER.UNSUP_WEIGHT == 4.0


@pytest.mark.parametrize("percent", PERCENTS)
def test_supervised_partial_baseline_trains_on_the_same_labeled_split_only(percent):
    soft = load(f"configs/coco/soft_teacher_R50_FPN_{percent}pct.yaml")
    supervised = load(f"configs/coco/supervised_R50_FPN_{percent}pct.yaml")
    assert supervised.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    assert supervised.DATASETS.TRAIN == soft.DATASETS.TRAIN and supervised.DATASETS.TRAIN_UNLABELED == ()
    for key in ("IMS_PER_BATCH", "MAX_ITER", "STEPS", "BASE_LR"):
        assert supervised.SOLVER[key] == soft.SOLVER[key]


def test_readme_fold_commands_move_every_dataset_to_the_same_other_fold():
    """README's other-fold commands, for Soft Teacher and for a supervised baseline."""
    moved = []
    for args, cfg in coco_section_train_net():
        fold1 = load(args.config_file)
        if cfg.DATASETS.TRAIN == fold1.DATASETS.TRAIN:
            continue
        moved.append(cfg.MODEL.META_ARCHITECTURE)
        (labeled,), (labeled_fold1,) = cfg.DATASETS.TRAIN, fold1.DATASETS.TRAIN
        percent, fold = PARTIAL_SPLIT.fullmatch(labeled).group(1, 2)
        assert PARTIAL_SPLIT.fullmatch(labeled_fold1).group(1, 2) == (percent, "1") and fold != "1"
        expected_unlabeled = (f"{labeled}_unlabeled",) if fold1.DATASETS.TRAIN_UNLABELED else ()
        assert cfg.DATASETS.TRAIN_UNLABELED == expected_unlabeled
        assert cfg.OUTPUT_DIR != fold1.OUTPUT_DIR
    assert sorted(moved) == ["GeneralizedRCNN", "SoftTeacher"]


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


def test_the_small_data_recipe_takes_the_shapes_benchmarks_measured_settings_for_one_gpu():
    recipe = load_config(os.path.join(REPO_ROOT, "configs", "soft_teacher_small_data.yaml"))
    measured = load_config(os.path.join(REPO_ROOT, "configs", "shapes", "soft_teacher_R18_FPN_5pct.yaml"))
    for key in ("EMA_MOMENTUM", "RPN_PSEUDO_THRESH", "CLS_PSEUDO_THRESH", "UNSUP_WEIGHT", "REG_UNCERTAINTY_THRESH"):
        assert recipe.SOFT_TEACHER[key] == measured.SOFT_TEACHER[key], key
    assert recipe.SOFT_TEACHER.BURN_IN_ITERS / recipe.SOLVER.MAX_ITER == (
        measured.SOFT_TEACHER.BURN_IN_ITERS / measured.SOLVER.MAX_ITER) == 0.5
    assert recipe.SOLVER.REFERENCE_WORLD_SIZE == 1 and recipe.SOLVER.MAX_ITER < 20000
    assert recipe.MODEL.META_ARCHITECTURE == "SoftTeacher" and recipe.MODEL.RESNETS.DEPTH == 50
