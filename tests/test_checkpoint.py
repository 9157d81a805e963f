"""SoftTeacherCheckpointer: both models saved and restored, plain Detectron2 weights into both,
a checkpoint without teacher, and the trainer state a checkpoint carries."""
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from detectron2.modeling import GeneralizedRCNN, build_model

from soft_teacher.engine import SoftTeacherCheckpointer, SoftTeacherTrainer

from helpers import (
    StandInTrainer,
    TinyDetector,
    TwinRegressor,
    captured_logs,
    make_tiny_cfg,
    stand_in_cfg,
    tiny_semisup_cfg,
)


def assert_same_weights(a, b):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def perturbed(module, offset):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(offset)
    return module


@pytest.fixture
def warnings_logged():
    """WARNING records of the checkpoint module."""
    with captured_logs("soft_teacher.engine.checkpoint", level=logging.WARNING) as records:
        yield records


def test_saves_both_models_and_loads_each_back(tmp_path):
    saved = TwinRegressor()
    perturbed(saved.teacher, 1.0)  # teacher != student
    SoftTeacherCheckpointer(saved, str(tmp_path)).save("both")
    assert {k.split(".")[0] for k in torch.load(tmp_path / "both.pth")["model"]} == {"teacher", "student"}

    loaded = TwinRegressor()
    SoftTeacherCheckpointer(loaded).load(str(tmp_path / "both.pth"))
    assert_same_weights(loaded.teacher, saved.teacher)
    assert_same_weights(loaded.student, saved.student)


def test_plain_detectron2_checkpoint_loads_into_both_models(tmp_path):
    cfg = make_tiny_cfg()
    detector = perturbed(GeneralizedRCNN(cfg), 2.0)
    plain = {k: v for k, v in detector.state_dict().items() if k.startswith("backbone.")}  # e.g. a backbone only
    torch.save({"model": plain}, tmp_path / "plain.pth")

    model = build_model(cfg)
    perturbed(model.teacher, 5.0)
    SoftTeacherCheckpointer(model).load(str(tmp_path / "plain.pth"))
    for name, value in plain.items():
        assert torch.equal(model.student.state_dict()[name], value), name
    # The teacher copies the whole student, the heads the checkpoint lacks included.
    assert_same_weights(model.teacher, model.student)


def test_caffe2_model_zoo_pkl_loads_into_both_models_by_name_matching(tmp_path):
    # An ImageNet backbone of Detectron2's model zoo is a pickled dict of Caffe2-named arrays.
    model = build_model(make_tiny_cfg())
    stem = model.student.backbone.bottom_up.stem.conv1.weight
    with open(tmp_path / "R-18.pkl", "wb") as f:
        pickle.dump({"conv1_w": np.full(tuple(stem.shape), 0.5, dtype=np.float32)}, f)
    SoftTeacherCheckpointer(model).load(str(tmp_path / "R-18.pkl"))
    assert torch.all(stem == 0.5)
    assert_same_weights(model.teacher, model.student)


def test_checkpoint_without_teacher_loads_student_into_both_and_warns(tmp_path, warnings_logged):
    saved = build_model(make_tiny_cfg())
    perturbed(saved.student, 3.0)
    student_only = {k: v for k, v in saved.state_dict().items() if k.startswith("student.")}
    torch.save({"model": student_only}, tmp_path / "student_only.pth")

    model = build_model(make_tiny_cfg())
    SoftTeacherCheckpointer(model).load(str(tmp_path / "student_only.pth"))
    assert_same_weights(model.student, saved.student)
    assert_same_weights(model.teacher, saved.student)
    assert any("no teacher weights" in r.getMessage() for r in warnings_logged)


def test_soft_teacher_checkpoint_into_a_plain_detector_takes_the_teacher(tmp_path):
    saved = TwinRegressor()
    perturbed(saved.teacher, 1.0)
    SoftTeacherCheckpointer(saved, str(tmp_path)).save("both")
    detector = TinyDetector()
    SoftTeacherCheckpointer(detector).load(str(tmp_path / "both.pth"))
    assert_same_weights(detector, saved.teacher)


def test_trainer_checkpoint_holds_iteration_optimizer_and_scheduler(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    trainer = StandInTrainer(cfg)
    trainer.iter = 41
    trainer.checkpointer.save("model_0000041")
    state = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_0000041.pth"))
    assert set(state) == {"model", "trainer"}
    assert state["trainer"]["iteration"] == 41
    assert "optimizer" in state["trainer"]["_trainer"]
    assert "LRScheduler" in state["trainer"]["hooks"]

    resumed = StandInTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert (resumed.iter, resumed.start_iter) == (41, 42)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision trains on CUDA only")
def test_amp_checkpoint_restores_the_grad_scaler(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.MODEL.DEVICE = "cuda"
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.MAX_ITER = 1
    cfg.DATASETS.TEST = ()
    trainer = SoftTeacherTrainer(cfg)
    trainer.train()
    saved = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))["trainer"]["_trainer"]["grad_scaler"]
    assert saved["scale"] > 0

    resumed = SoftTeacherTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed._trainer.grad_scaler.get_scale() == saved["scale"]
