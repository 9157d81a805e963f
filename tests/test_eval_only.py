"""Evaluation of the teacher and/or the student: train_net.py --eval-only and SoftTeacherTrainer.test."""
import json
import os

import pytest
import torch

from detectron2.modeling import build_model
from soft_teacher.engine import SoftTeacherCheckpointer, SoftTeacherTrainer

from helpers import run_train_net, tiny_semisup_cfg, write_config


def make_detector_predict_class(detector, class_index):
    """Bias the box classifier so every proposal gets ``class_index`` (the last index: background)."""
    with torch.no_grad():
        detector.roi_heads.box_predictor.cls_score.bias.zero_()
        detector.roi_heads.box_predictor.cls_score.bias[class_index] = 20.0


def detections_in(output_dir, model_name):
    with open(os.path.join(output_dir, "inference", model_name, "coco_instances_results.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_eval_only_prints_coco_ap_of_the_checkpoints_teacher(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    model = build_model(cfg)
    make_detector_predict_class(model.teacher, 0)  # the teacher detects; the student sees only background
    make_detector_predict_class(model.student, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    SoftTeacherCheckpointer(model, str(tmp_path)).save("trained")
    config_file = write_config(cfg, tmp_path / "config.yaml")

    weights = str(tmp_path / "trained.pth")
    result = run_train_net(["--config-file", config_file, "--eval-only", "MODEL.WEIGHTS", weights])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Evaluating the teacher on ('tiny_test',)" in result.stdout
    assert "Evaluating the student" not in result.stdout
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in result.stdout
    assert len(detections_in(cfg.OUTPUT_DIR, "teacher")) > 0  # the teacher's weights made these


def test_eval_model_both_evaluates_teacher_and_student_separately(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.SOFT_TEACHER.EVAL_MODEL = "both"
    model = build_model(cfg)
    make_detector_predict_class(model.teacher, 0)
    make_detector_predict_class(model.student, 1)
    results = SoftTeacherTrainer.test(cfg, model)
    assert list(results) == ["teacher", "student"]
    assert {"AP", "AP50"} <= set(results["teacher"]["bbox"]) and {"AP", "AP50"} <= set(results["student"]["bbox"])
    assert {d["category_id"] for d in detections_in(cfg.OUTPUT_DIR, "teacher")} == {1}
    assert {d["category_id"] for d in detections_in(cfg.OUTPUT_DIR, "student")} == {2}


def test_each_of_several_test_sets_keeps_its_own_prediction_files(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.DATASETS.TEST = ("tiny_test", "tiny_labeled")
    model = build_model(cfg)
    make_detector_predict_class(model.teacher, 0)
    results = SoftTeacherTrainer.test(cfg, model)
    assert set(results["teacher"]) == {"tiny_test", "tiny_labeled"}
    for dataset in cfg.DATASETS.TEST:
        assert len(detections_in(cfg.OUTPUT_DIR, os.path.join("teacher", dataset))) > 0, dataset


def test_eval_model_student_evaluates_only_the_student(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.SOFT_TEACHER.EVAL_MODEL = "student"
    results = SoftTeacherTrainer.test(cfg, build_model(cfg))
    assert list(results) == ["student"]
    assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "inference", "teacher"))
