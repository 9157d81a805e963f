"""SoftTeacherCheckpointer: both models saved and restored, plain Detectron2 weights into both,
a checkpoint without teacher, and the trainer state a checkpoint carries."""
import logging
import os

import pytest
import torch

from soft_teacher.engine import SoftTeacherCheckpointer

from engine_helpers import StandInTrainer, TinyDetector, TwinRegressor, stand_in_cfg


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
    """WARNING records of the checkpoint module (attached directly: setup_logger may stop propagation)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("soft_teacher.engine.checkpoint")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


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
    detector = perturbed(TinyDetector(), 2.0)
    plain = {k: v for k, v in detector.state_dict().items() if k.startswith("backbone.")}  # e.g. a backbone only
    torch.save({"model": plain}, tmp_path / "plain.pth")

    model = TwinRegressor()
    perturbed(model.teacher, 5.0)
    SoftTeacherCheckpointer(model).load(str(tmp_path / "plain.pth"))
    assert torch.equal(model.student.backbone.weight, detector.backbone.weight)
    # The teacher copies the whole student, the head the checkpoint lacks included.
    assert_same_weights(model.teacher, model.student)


def test_checkpoint_without_teacher_loads_student_into_both_and_warns(tmp_path, warnings_logged):
    saved = TwinRegressor()
    perturbed(saved.student, 3.0)
    student_only = {k: v for k, v in saved.state_dict().items() if k.startswith("student.")}
    torch.save({"model": student_only}, tmp_path / "student_only.pth")

    model = TwinRegressor()
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


def test_trainer_checkpoint_holds_iteration_optimizer_scheduler_and_grad_scaler(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    cfg.SOLVER.AMP.ENABLED = True  # the step trainer with a grad scaler (the step itself needs CUDA)
    trainer = StandInTrainer(cfg)
    trainer.iter = 41
    trainer.checkpointer.save("model_0000041")
    state = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_0000041.pth"), weights_only=False)
    assert set(state) == {"model", "trainer"}
    assert state["trainer"]["iteration"] == 41
    assert {"optimizer", "grad_scaler"} <= set(state["trainer"]["_trainer"])
    assert "LRScheduler" in state["trainer"]["hooks"]

    resumed = StandInTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert (resumed.iter, resumed.start_iter) == (41, 42)
