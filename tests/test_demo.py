"""tools/run_demo.py (``make demo``) and the two demo configs."""
import json
import math
import os

import cv2
import numpy as np
import pytest

from soft_teacher.data.datasets.shapes import register_shapes
from soft_teacher.engine import load_config
from commands import REPO as _ROOT, load_tool

run_demo = load_tool("run_demo")

SOFT_TEACHER_DEMO = os.path.join(_ROOT, "configs", "shapes", "soft_teacher_demo.yaml")
SUPERVISED_DEMO = os.path.join(_ROOT, "configs", "shapes", "supervised_demo.yaml")


@pytest.fixture
def small_shapes(tmp_path):
    """The shapes names registered as a 20 + 4 image set under a temporary DETECTRON2_DATASETS."""
    previous = os.environ.get("DETECTRON2_DATASETS")
    os.environ["DETECTRON2_DATASETS"] = str(tmp_path / "datasets")
    register_shapes(num_train=20, num_val=4)
    yield
    if previous is None:
        del os.environ["DETECTRON2_DATASETS"]
    else:
        os.environ["DETECTRON2_DATASETS"] = previous
    register_shapes()


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_cpu(small_shapes, tmp_path, capsys):
    output = str(tmp_path / "demo")
    status = run_demo.main([
        "--output", output, "--num-pictures", "2",
        "SOLVER.MAX_ITER", "3", "SOFT_TEACHER.BURN_IN_ITERS", "1", "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()",
    ])
    assert status == 0
    with open(os.path.join(output, "results.json")) as f:
        results = json.load(f)
    # 10% of 20 images labeled, the other 18 unlabeled; 4 validation images.
    assert results["datasets"] == {"shapes_train_10pct_1": 2, "shapes_train_10pct_1_unlabeled": 18, "shapes_val": 4}
    assert set(results["box_ap"]) == {"teacher", "student"}
    for figures in results["box_ap"].values():
        assert 0.0 <= figures["AP"] <= 100.0 and not math.isnan(figures["AP"])
    pseudo = cv2.imread(os.path.join(output, "pseudo_labels.png"))
    curves = cv2.imread(os.path.join(output, "training_curves.png"))
    assert pseudo is not None and curves is not None
    assert len(os.listdir(os.path.join(output, "pseudo_labels"))) == 2  # one picture per unlabeled image
    printed = capsys.readouterr().out
    assert os.path.join(output, "pseudo_labels.png") in printed
    assert os.path.join(output, "training_curves.png") in printed
    assert "teacher" in printed and "student" in printed and "AP" in printed


def test_demo_configs_differ_only_in_the_semi_supervised_parts():
    soft, supervised = load_config(SOFT_TEACHER_DEMO), load_config(SUPERVISED_DEMO)
    assert soft.MODEL.META_ARCHITECTURE == "SoftTeacher"
    assert supervised.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    assert supervised.DATASETS.TRAIN_UNLABELED == ()
    for cfg in (soft, supervised):
        cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
        cfg.DATASETS.TRAIN_UNLABELED = ()
    soft.SOFT_TEACHER = supervised.SOFT_TEACHER
    soft.SOLVER.IMS_PER_BATCH_UNLABELED = supervised.SOLVER.IMS_PER_BATCH_UNLABELED
    assert soft == supervised


def test_box_ap_by_model_reads_teacher_student_and_plain_results():
    nested = {"teacher": {"bbox": {"AP": 31.5, "APl": float("nan")}}, "student": {"bbox": {"AP": 29.0}}}
    assert run_demo.box_ap_by_model(nested) == {"teacher": {"AP": 31.5, "APl": None}, "student": {"AP": 29.0}}
    assert run_demo.box_ap_by_model({"bbox": {"AP": 12.345}}) == {"model": {"AP": 12.35}}
    assert run_demo.box_ap_by_model(None) == {}


def test_grid_picture_tiles_row_major_and_enlarges(tmp_path):
    paths = []
    for index, (height, width) in enumerate([(10, 20), (12, 8), (5, 5)]):
        path = str(tmp_path / f"{index}.png")
        cv2.imwrite(path, np.full((height, width, 3), index * 50, dtype=np.uint8))
        paths.append(path)
    out = str(tmp_path / "grid.png")
    run_demo.grid_picture(paths, out, columns=2, scale=2)
    grid = cv2.imread(out)
    assert grid.shape == (2 * 2 * 12, 2 * 2 * 20, 3)  # 2 rows x 2 columns of 12 x 20 cells, doubled
    assert (grid[0, 0] == 0).all() and (grid[0, 2 * 20] == 50).all() and (grid[2 * 12, 0] == 100).all()
    assert (grid[-1, -1] == 255).all()  # the empty fourth cell is white
