"""SoftTeacherTrainer: the training loop, the EMA teacher, logging, resume, NaN losses, scaling."""
import glob
import logging
import os

import pytest
import torch

from detectron2.engine import HookBase
from soft_teacher.engine import SoftTeacherTrainer, unwrap_model
from soft_teacher.engine.trainer import check_losses_finite, log_schedule

from helpers import StandInTrainer, captured_logs, read_metrics, stand_in_cfg, tiny_semisup_cfg


class StopAfter(HookBase):
    """Simulates a crash after iteration ``iteration`` (after its checkpoint is written)."""

    def __init__(self, iteration):
        self._iteration = iteration

    def after_step(self):
        if self.trainer.iter == self._iteration:
            raise KeyboardInterrupt(f"stopped after iteration {self._iteration}")


def teacher_weights(trainer):
    return {k: v.clone() for k, v in unwrap_model(trainer.model).teacher.state_dict().items()}


def test_resume_after_a_stop_gives_the_teacher_of_the_uninterrupted_run(tmp_path):
    # 6 iterations; SGD momentum, a warm-up and an LR step at 3, EMA 0.5: resuming must restore
    # the teacher, the student, the optimizer's momentum, the scheduler and the iteration.
    uninterrupted = StandInTrainer(stand_in_cfg(tmp_path / "full"))
    uninterrupted.train()

    cfg = stand_in_cfg(tmp_path / "stopped")  # checkpoints after iterations 2 and 5
    stopped = StandInTrainer(cfg)
    stopped.register_hooks([StopAfter(3)])
    with pytest.raises(KeyboardInterrupt):
        stopped.train()
    assert not torch.equal(teacher_weights(stopped)["head.weight"], teacher_weights(uninterrupted)["head.weight"])

    resumed = StandInTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    final, expected = teacher_weights(resumed), teacher_weights(uninterrupted)
    for name in expected:
        torch.testing.assert_close(final[name], expected[name], rtol=0, atol=1e-7, msg=name)


def test_lr_follows_detectron2_warm_up_and_steps(tmp_path):
    trainer = StandInTrainer(stand_in_cfg(tmp_path))  # lr 0.1, linear warm-up over 2 iterations, x0.1 at 3
    assert trainer.cfg.SOLVER.WARMUP_FACTOR == 0.001
    trainer.train()
    lrs = [lr for lr, _ in trainer.storage.history("lr").values()]
    # Warm-up factor at iteration i: 0.001 + (1 - 0.001) * i / 2.
    assert lrs == pytest.approx([0.1 * 0.001, 0.1 * 0.5005, 0.1, 0.01, 0.01, 0.01])


def test_nan_loss_stops_training_naming_the_iteration_and_the_loss(tmp_path):
    class NaNAtIteration2(StandInTrainer):
        nan_at_iter = 2

    trainer = NaNAtIteration2(stand_in_cfg(tmp_path))
    with pytest.raises(FloatingPointError, match="at iteration 2: unsup_loss_consistency = nan") as info:
        trainer.train()
    assert "sup_loss_fit" not in str(info.value)  # only the non-finite losses are named


def test_check_losses_finite_names_every_infinite_loss():
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(float("inf")), "c": torch.tensor(float("-inf"))}
    with pytest.raises(FloatingPointError, match="iteration 7: b = inf, c = -inf"):
        check_losses_finite(losses, 7)
    check_losses_finite({"a": torch.tensor(1.0)}, 7)


def test_auto_scale_workers_also_scales_the_unlabeled_batch(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 2
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 2, 8
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER = 0.01, 1000
    scaled = SoftTeacherTrainer.auto_scale_workers(cfg, 4)
    assert (scaled.SOLVER.IMS_PER_BATCH, scaled.SOLVER.IMS_PER_BATCH_UNLABELED) == (4, 16)
    assert scaled.SOLVER.BASE_LR == pytest.approx(0.02) and scaled.SOLVER.MAX_ITER == 500
    assert SoftTeacherTrainer.auto_scale_workers(cfg, 2) is cfg

    cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 7
    with pytest.raises(ValueError, match="IMS_PER_BATCH_UNLABELED"):
        SoftTeacherTrainer.auto_scale_workers(cfg, 4)


def test_auto_scale_workers_ends_the_burn_in_at_the_same_fraction_of_the_schedule(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    cfg.SOLVER.REFERENCE_WORLD_SIZE, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 8, 8, 32
    cfg.SOLVER.MAX_ITER, cfg.SOFT_TEACHER.BURN_IN_ITERS = 1000, 250
    scaled = SoftTeacherTrainer.auto_scale_workers(cfg, 2)
    assert (scaled.SOLVER.MAX_ITER, scaled.SOFT_TEACHER.BURN_IN_ITERS) == (4000, 1000)


def scaled_schedule_logs(cfg, world_size):
    with captured_logs("soft_teacher.engine.trainer") as records:
        log_schedule(cfg, SoftTeacherTrainer.auto_scale_workers(cfg, world_size), world_size)
    return [r for r in records if r.levelno == logging.INFO], [r for r in records if r.levelno == logging.WARNING]


def test_the_effective_schedule_is_logged_after_world_size_scaling(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    cfg.MODEL.META_ARCHITECTURE = "SoftTeacher"
    cfg.SOLVER.REFERENCE_WORLD_SIZE, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 8, 8, 32
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 0.01, 1000, (800,), 0
    cfg.SOFT_TEACHER.EMA_MOMENTUM = 0.999
    infos, warnings = scaled_schedule_logs(cfg, 2)
    assert infos[0].getMessage() == (
        "Schedule on 2 processes: 4000 iterations of 2 labeled + 8 unlabeled images (1 labeled + 4 unlabeled per "
        "process), learning rate 0.0025, steps (3200,), warm-up 0 iterations; teacher EMA momentum 0.999 (a "
        "horizon of about 1000 iterations), burn-in 0 iterations.")
    assert len(warnings) == 1  # 8 -> 2 processes: 4x, where the warning starts
    infos, warnings = scaled_schedule_logs(cfg, 4)
    assert "2000 iterations" in infos[0].getMessage() and not warnings  # 2x


def test_a_schedule_stretched_4x_or_more_warns_with_the_overrides_that_keep_it(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    cfg.MODEL.META_ARCHITECTURE = "SoftTeacher"
    cfg.SOLVER.REFERENCE_WORLD_SIZE, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 8, 8, 32
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER = 0.01, 180000
    _, warnings = scaled_schedule_logs(cfg, 1)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "stretched the schedule 8x, to 1440000 iterations (the config says 180000) at 0.00125" in message
    assert ("SOLVER.REFERENCE_WORLD_SIZE 1 SOLVER.IMS_PER_BATCH 1 SOLVER.BASE_LR 0.00125 "
            "SOLVER.IMS_PER_BATCH_UNLABELED 4") in message
    assert "configs/soft_teacher_small_data.yaml" in message


def test_a_supervised_schedule_is_logged_without_unlabeled_images_or_teacher(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    cfg.MODEL.META_ARCHITECTURE, cfg.SOLVER.MAX_ITER = "GeneralizedRCNN", 10
    infos, _ = scaled_schedule_logs(cfg, 1)
    message = infos[0].getMessage()
    assert message.startswith("Schedule on 1 process: 10 iterations of") and "unlabeled" not in message
    assert "EMA" not in message


def test_gradient_clipping_from_solver_keys_bounds_the_step(tmp_path):
    cfg = stand_in_cfg(tmp_path, max_iter=1)
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.WARMUP_ITERS = 1.0, 0.0, 0.0, 0
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1e-3
    trainer = StandInTrainer(cfg)
    before = {k: v.clone() for k, v in unwrap_model(trainer.model).student.named_parameters()}
    trainer.train()
    for name, param in unwrap_model(trainer.model).student.named_parameters():
        # lr 1, no momentum or decay: each coordinate moves by its clipped gradient, at most 1e-3.
        assert (param.detach() - before[name]).abs().max() <= 1e-3 + 1e-7, name


def test_mixed_precision_on_a_cpu_model_fails_before_training(tmp_path):
    cfg = stand_in_cfg(tmp_path)
    cfg.SOLVER.AMP.ENABLED = True
    with pytest.raises(ValueError, match="SOLVER.AMP.ENABLED .* needs a CUDA device but MODEL.DEVICE is 'cpu'"):
        StandInTrainer(cfg)


class TeacherBeforeLastStep(HookBase):
    """Keeps a copy of the teacher's parameters before the last iteration."""

    def before_step(self):
        if self.trainer.iter == self.trainer.max_iter - 1:
            teacher = unwrap_model(self.trainer.model).teacher
            self.teacher = {k: v.detach().clone() for k, v in teacher.named_parameters()}


@pytest.mark.slow
def test_short_run_logs_losses_pseudo_boxes_and_periodically_evaluates_both_models(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.SOFT_TEACHER.EMA_MOMENTUM = 0.5
    assert cfg.SOFT_TEACHER.EVAL_MODEL == "teacher"  # periodic evaluation reports both all the same
    trainer = SoftTeacherTrainer(cfg)
    capture = TeacherBeforeLastStep()
    trainer.register_hooks([capture])
    trainer.resume_or_load(resume=False)
    results = trainer.train()

    # The teacher after the last step is the EMA of its previous self and the updated student.
    model = unwrap_model(trainer.model)
    student = dict(model.student.named_parameters())
    for name, teacher_param in model.teacher.named_parameters():
        expected = 0.5 * capture.teacher[name] + 0.5 * student[name].detach()
        torch.testing.assert_close(teacher_param, expected, msg=name)

    rows = read_metrics(cfg.OUTPUT_DIR)
    train_row = next(r for r in rows if "total_loss" in r)
    for key in ("sup_loss_cls", "sup_loss_box_reg", "sup_loss_rpn_cls", "sup_loss_rpn_loc",
                "unsup_loss_cls", "unsup_loss_box_reg", "unsup_loss_rpn_cls", "unsup_loss_rpn_loc",
                "lr", "data_time", "ema_momentum", "pseudo/boxes_per_image_rpn", "pseudo/boxes_per_image_cls",
                "pseudo/boxes_per_image_reg", "pseudo/precision", "pseudo/recall", "data/unlabeled_images_skipped"):
        assert key in train_row, key
    assert train_row["ema_momentum"] == 0.5
    assert train_row["pseudo/boxes_per_image_cls"] > 0
    assert 0.0 <= train_row["pseudo/precision"] <= 1.0 and 0.0 <= train_row["pseudo/recall"] <= 1.0
    eval_row = next(r for r in rows if "teacher/bbox/AP" in r)
    assert "student/bbox/AP" in eval_row
    assert set(results) == {"teacher", "student"} and "AP" in results["teacher"]["bbox"]
    assert glob.glob(os.path.join(cfg.OUTPUT_DIR, "events.out.tfevents.*"))  # TensorBoard
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))


@pytest.mark.slow
def test_evaluation_during_burn_in_reports_the_student_only_and_says_why(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.SOFT_TEACHER.BURN_IN_ITERS = 5  # longer than the 2-iteration run
    trainer = SoftTeacherTrainer(cfg)
    trainer.resume_or_load(resume=False)
    with captured_logs("soft_teacher.engine.trainer") as records:
        results = trainer.train()

    assert set(results) == {"student"}
    eval_row = next(r for r in read_metrics(cfg.OUTPUT_DIR) if "student/bbox/AP" in r)
    assert "teacher/bbox/AP" not in eval_row
    assert any("teacher is an untrained copy" in record.getMessage() for record in records)


@pytest.mark.slow
def test_supervised_config_trains_a_plain_detector_without_teacher(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.DATASETS.TRAIN_UNLABELED = ()
    cfg.SOLVER.MAX_ITER = 1
    cfg.TEST.EVAL_PERIOD = 0
    cfg.DATASETS.TEST = ()
    trainer = SoftTeacherTrainer(cfg)
    trainer.train()
    row = read_metrics(cfg.OUTPUT_DIR)[-1]
    assert {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc", "total_loss"} <= set(row)
    assert not any(key.startswith(("pseudo/", "unsup")) or key == "ema_momentum" for key in row)


def test_labeled_and_test_sets_with_different_class_counts_fail_before_training(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path, name="mismatch", test_categories=("cat", "dog"))
    with pytest.raises(ValueError, match="mismatch_test.*mismatch_labeled"):
        SoftTeacherTrainer(cfg)
