"""tools/run_demo.py (``make demo``): Soft Teacher against its supervised twin, and the two demo configs."""
import json
import math
import os

import cv2
import pytest
import torch

from soft_teacher.data.datasets.shapes import generate_shapes
from soft_teacher.engine import ConfigError, load_config

import branch_runs
import run_demo as demo
from helpers import REPO_ROOT
from plot_metrics import metrics_records

SOFT_TEACHER_DEMO = os.path.join(REPO_ROOT, "configs", "shapes", "soft_teacher_demo.yaml")
SUPERVISED_DEMO = os.path.join(REPO_ROOT, "configs", "shapes", "supervised_demo.yaml")
# The demo's schedule shrunk: the Soft Teacher arm branches at B = 2 from the twin's model_0000001.pth.
TINY_SCHEDULE = ["SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "SOFT_TEACHER.BURN_IN_ITERS", "2",
                 "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "0", "SOLVER.IMS_PER_BATCH", "2",
                 "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "TEST.EVAL_PERIOD", "0"]


@pytest.fixture
def tiny_shapes(tmp_path):
    """Overrides that train on a 20 + 4 image shapes set in ``tmp_path`` (``DATASETS.CUSTOM_COCO``, so that
    the demo's train_net.py processes see it too): 4 labeled, 16 unlabeled (annotations hidden), 4 test images."""
    folder = generate_shapes(str(tmp_path / "datasets"), num_train=20, num_val=4)
    with open(os.path.join(folder, "annotations", "shapes_train.json")) as f:
        train = json.load(f)
    entries = []
    for name, images in (("tiny_labeled", train["images"][:4]), ("tiny_unlabeled", train["images"][4:])):
        ids = {image["id"] for image in images}
        subset = dict(train, images=images, annotations=[a for a in train["annotations"] if a["image_id"] in ids])
        json_file = str(tmp_path / f"{name}.json")
        with open(json_file, "w") as f:
            json.dump(subset, f)
        entries.append((name, json_file, os.path.join(folder, "train")))
    entries.append(("tiny_val", os.path.join(folder, "annotations", "shapes_val.json"), os.path.join(folder, "val")))
    return ["DATASETS.CUSTOM_COCO", repr(tuple(entries)), "DATASETS.TRAIN", "('tiny_labeled',)",
            "DATASETS.TRAIN_UNLABELED", "('tiny_unlabeled',)", "DATASETS.TEST", "('tiny_val',)"]


@pytest.mark.slow
def test_demo_trains_both_arms_one_after_the_other_and_compares_them_on_the_cpu(tiny_shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(branch_runs, "POLL_SECONDS", 0.5)
    output = str(tmp_path / "demo")
    printed = "\n".join(demo.summary_lines(demo.run_demo(output, [*TINY_SCHEDULE, *tiny_shapes], num_pictures=2)))
    with open(os.path.join(output, "results.json")) as f:
        results = json.load(f)
    assert results["datasets"] == {"tiny_labeled": 4, "tiny_unlabeled": 16, "tiny_val": 4}
    assert set(results["box_ap"]) == {"teacher", "student", "supervised"}
    for figures in results["box_ap"].values():
        assert {"AP", "AP50", "AP75", "APs", "APm"} <= set(figures)
        assert 0.0 <= figures["AP"] <= 100.0 and not math.isnan(figures["AP"])
    assert results["ap_difference"]["teacher - supervised"] == pytest.approx(
        results["box_ap"]["teacher"]["AP"] - results["box_ap"]["supervised"]["AP"], abs=0.011)
    assert set(results["pseudo_labels"]) == {"precision", "recall", "boxes_per_image"}
    assert results["pseudo_labels"]["boxes_per_image"] >= 0 and 0 <= results["pseudo_labels"]["recall"] <= 1
    assert set(results["seconds"]) == {"data", "train_and_evaluate", "pseudo_labels", "curves", "total"}
    assert results["parallel"] == 1 and results["torch_threads"] == torch.get_num_threads()
    # The Soft Teacher arm branched: it resumed from a copy of the twin's model_0000001.pth, at iteration 2.
    supervised, soft = os.path.join(output, "supervised"), os.path.join(output, "soft_teacher")
    assert os.path.isfile(os.path.join(soft, "model_0000001.pth"))
    with open(os.path.join(soft, "log.txt")) as f:
        assert "Starting training from iteration 2" in f.read()
    assert min(record["iteration"] for record in metrics_records(soft)) >= 2
    assert cv2.imread(os.path.join(output, "pseudo_labels.png")) is not None
    assert cv2.imread(os.path.join(output, "training_curves.png")) is not None
    assert len(os.listdir(os.path.join(output, "pseudo_labels"))) == 2  # one picture per unlabeled image
    assert os.path.isfile(os.path.join(supervised, "model_final.pth"))
    # One after the other: the branch copied its checkpoint after the twin had finished.
    assert os.path.getmtime(os.path.join(supervised, "model_final.pth")) <= os.path.getmtime(
        os.path.join(soft, "model_0000001.pth"))
    for line in ("teacher", "student", "supervised", "teacher - supervised", "student - supervised",
                 "precision", "recall", "boxes per image", os.path.join(output, "pseudo_labels.png"),
                 os.path.join(output, "training_curves.png")):
        assert line in printed, line


def test_a_failed_arm_is_an_error_naming_its_log(tmp_path, monkeypatch):
    def no_training(self):
        return {"supervised": {"state": f"failed (exit code 1; see {tmp_path}/supervised/stdout.log)"},
                "soft_teacher": {"state": "not started: supervised/model_0000599.pth is missing"}}

    monkeypatch.setattr(branch_runs.Scheduler, "run", no_training)
    monkeypatch.setattr(demo, "prepare_datasets", lambda cfgs: {})
    with pytest.raises(demo.DemoError) as error:
        demo.run_demo(str(tmp_path))
    supervised_line, soft_line = str(error.value).splitlines()
    assert "the supervised twin arm" in supervised_line and "exit code 1" in supervised_line
    assert "the Soft Teacher arm" in soft_line and "not started" in soft_line
    assert soft_line.endswith(f"Read {tmp_path}/supervised/stdout.log (the trainer's log.txt is beside it).")


@pytest.mark.parametrize("setting, message", [({"parallel": 0}, "at least one arm at a time, not 0"),
                                              ({"threads": -1}, "at least one CPU thread, not -1")])
def test_no_arm_at_a_time_or_no_thread_is_refused_before_training(setting, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        demo.run_demo(str(tmp_path), **setting)
    assert not os.listdir(tmp_path)


def test_a_burn_in_the_twin_does_not_checkpoint_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)cannot branch.*model_0000499\.pth"):  # the tool's exit code 2
        demo.run_demo(str(tmp_path), ["SOFT_TEACHER.BURN_IN_ITERS", "500"])
    assert not os.listdir(tmp_path)


def test_demo_configs_share_the_schedule_and_the_twin_saves_the_branch_checkpoint():
    soft, supervised = load_config(SOFT_TEACHER_DEMO), load_config(SUPERVISED_DEMO)
    runs = demo.plan_arms(SOFT_TEACHER_DEMO, SUPERVISED_DEMO)
    assert [run.name for run in runs] == ["supervised", "soft_teacher"] and runs[1].twin == runs[0]
    assert branch_runs.branch_problems(runs) == []
    burn_in = soft.SOFT_TEACHER.BURN_IN_ITERS
    assert supervised.SOLVER.CHECKPOINT_PERIOD == burn_in and 0 < burn_in < soft.SOLVER.MAX_ITER
    assert soft.TEST.EVAL_PERIOD == supervised.TEST.EVAL_PERIOD > 0 and soft.SOFT_TEACHER.EVAL_MODEL == "both"


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
    soft.SOLVER.CHECKPOINT_PERIOD = supervised.SOLVER.CHECKPOINT_PERIOD  # the twin saves the branch point
    assert soft == supervised


def test_box_ap_of_the_arms_comes_from_their_final_evaluations():
    soft = {"teacher": {"AP": 31.456, "APl": float("nan")}, "student": {"AP": 29.0}}
    box_ap = demo.box_ap_of_arms({"model": {"AP": 30.0, "AP50": 50.0}}, soft)
    assert box_ap == {"teacher": {"AP": 31.46, "APl": None}, "student": {"AP": 29.0},
                      "supervised": {"AP": 30.0, "AP50": 50.0}}


def test_ap_differences_are_each_soft_teacher_model_minus_the_supervised_twin():
    box_ap = {"teacher": {"AP": 31.46}, "student": {"AP": 29.0}, "supervised": {"AP": 30.0}}
    assert demo.ap_differences(box_ap) == {"teacher - supervised": pytest.approx(1.46),
                                           "student - supervised": pytest.approx(-1.0)}
    assert demo.ap_differences({"teacher": {"AP": 31.0}, "supervised": {"AP": None}}) == {
        "teacher - supervised": None, "student - supervised": None}


def test_pseudo_label_summary_takes_precision_recall_and_boxes_at_the_classification_threshold():
    stats = {"pseudo/precision": 0.81234, "pseudo/recall": 0.4, "pseudo/boxes_per_image_cls": 1.5,
             "pseudo/boxes_per_image_rpn": 9.0, "pseudo/precision_at_0.5": 0.3}
    assert demo.pseudo_label_summary(stats) == {"precision": 0.8123, "recall": 0.4, "boxes_per_image": 1.5}
    assert demo.pseudo_label_summary({"pseudo/boxes_per_image_cls": 0.0}) == {
        "precision": None, "recall": None, "boxes_per_image": 0.0}


def test_summary_prints_each_arm_the_differences_and_the_pseudo_labels():
    results = {
        "torch_threads": 2, "parallel": 1, "device": "cpu", "seconds": {"total": 600.0}, "test_sets": ["shapes_val"],
        "max_iter": 900, "burn_in_iters": 600, "cls_pseudo_thresh": 0.9,
        "box_ap": {"teacher": {"AP": 31.46, "AP50": 50.0}, "student": {"AP": 29.0},
                   "supervised": {"AP": 30.0, "AP50": None}},
        "ap_difference": {"teacher - supervised": 1.46, "student - supervised": -1.0},
        "pseudo_labels": {"precision": 0.8123, "recall": 0.4, "boxes_per_image": None},
        "pseudo_labels_png": "out/pseudo_labels.png", "training_curves_png": "out/training_curves.png",
        "results_json": "out/results.json",
        "runs": {"supervised": {"output_dir": "out/supervised"}, "soft_teacher": {"output_dir": "out/soft_teacher"}},
    }
    text = "\n".join(demo.summary_lines(results))
    assert "Demo finished in 10.0 min (two train_net.py processes one after the other, 2 CPU threads each" in text
    assert "teacher    box AP 31.5  AP50 50.0" in text and "supervised box AP 30.0  AP50 n/a" in text
    assert "teacher - supervised: +1.5 AP" in text and "student - supervised: -1.0 AP" in text
    assert "score >= 0.9" in text and "precision 0.81, recall 0.40, n/a boxes per image" in text
    assert "after 900 iterations" in text and "at iteration 600" in text and "out/supervised" in text
