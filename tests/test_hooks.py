"""TeacherEMA, PseudoLabelStatistics, NoPseudoBoxWarning, SkippedUnlabeledImages and PseudoLabelPrinter, driven
by hand on stand-ins."""
import logging
from types import SimpleNamespace

import pytest
from torch import nn

from detectron2.utils.events import EventStorage
from helpers import captured_logs
from soft_teacher.engine import hooks as hooks_module
from soft_teacher.engine.hooks import (
    NoPseudoBoxWarning,
    PseudoLabelPrinter,
    PseudoLabelStatistics,
    SkippedUnlabeledImages,
    TeacherEMA,
    unwrap_model,
)


class Twin(nn.Module):
    """Teacher and student, each one scalar weight (and a float buffer)."""

    def __init__(self, teacher_value, student_value):
        super().__init__()
        self.teacher = nn.Linear(1, 1, bias=False)
        self.student = nn.Linear(1, 1, bias=False)
        nn.init.constant_(self.teacher.weight, teacher_value)
        nn.init.constant_(self.student.weight, student_value)


def attach(hook, model, storage):
    """A minimal trainer for ``hook``: the model, the storage and the current iteration."""
    hook.trainer = SimpleNamespace(model=model, storage=storage, iter=0)
    return hook.trainer


def run_steps(hook, trainer, storage, iterations, before_hook=lambda it: None):
    for it in iterations:
        trainer.iter = storage.iter = it
        before_hook(it)
        hook.after_step()


@pytest.fixture
def captured():
    """The records logged by the hooks and by Detectron2's console writer."""
    with captured_logs("soft_teacher.engine.hooks", "detectron2.utils.events") as records:
        yield records


def test_teacher_ema_applies_the_warmed_up_ema_formula_after_each_step():
    model = Twin(teacher_value=1.0, student_value=3.0)
    with EventStorage(0) as storage:
        hook = TeacherEMA(momentum=0.9)
        trainer = attach(hook, model, storage)
        run_steps(hook, trainer, storage, [0])
        # No burn-in: the k = 0 copy was the construction; after iteration 0, k = 1, m = 1/2.
        assert model.teacher.weight.item() == pytest.approx(0.5 * 1.0 + 0.5 * 3.0)
        assert model.student.weight.item() == 3.0
        assert storage.latest()["ema_momentum"] == (0.5, 0)
        run_steps(hook, trainer, storage, [1])  # k = 2, m = 2/3
        assert model.teacher.weight.item() == pytest.approx(2 / 3 * 2.0 + 1 / 3 * 3.0)
        assert storage.latest()["ema_momentum"] == (pytest.approx(2 / 3), 1)


def test_teacher_ema_momentum_sequence_matches_the_reference_hook():
    # microsoft/SoftTeacher MeanTeacher(momentum=m, warm_up=0) updates before iteration i with
    # min(m, 1 - 1 / (i + 1)); our update after iteration i is its update before iteration i + 1.
    m = 0.9
    with EventStorage(0) as storage:
        hook = TeacherEMA(momentum=m)
        trainer = attach(hook, Twin(0.0, 1.0), storage)
        run_steps(hook, trainer, storage, range(15))
        logged = [value for value, _ in storage.history("ema_momentum").values()]
    assert logged == pytest.approx([min(m, 1 - 1 / (i + 2)) for i in range(15)])
    assert logged[:3] == pytest.approx([1 / 2, 2 / 3, 3 / 4]) and logged[-1] == m


def test_teacher_ema_leaves_teacher_during_burn_in_then_copies_student_and_warms_up():
    model = Twin(teacher_value=1.0, student_value=3.0)
    with EventStorage(0) as storage:
        hook = TeacherEMA(momentum=0.9, burn_in_iters=3)
        trainer = attach(hook, model, storage)
        run_steps(hook, trainer, storage, [0, 1])
        assert model.teacher.weight.item() == 1.0
        assert "ema_momentum" not in storage.latest()
        run_steps(hook, trainer, storage, [2])  # the last burn-in iteration: k = 0, a copy
        assert model.teacher.weight.item() == 3.0
        assert storage.latest()["ema_momentum"] == (0.0, 2)
        nn.init.constant_(model.student.weight, 5.0)
        run_steps(hook, trainer, storage, [3])  # k = 1: the mean of the two students
        assert model.teacher.weight.item() == pytest.approx(0.5 * 3.0 + 0.5 * 5.0)
        nn.init.constant_(model.student.weight, 10.0)
        run_steps(hook, trainer, storage, [4])  # k = 2
        assert model.teacher.weight.item() == pytest.approx((3.0 + 5.0 + 10.0) / 3)
        assert storage.latest()["ema_momentum"] == (pytest.approx(2 / 3), 4)


@pytest.mark.parametrize("burn_in_iters", [0, 4])
def test_teacher_ema_resumed_at_any_iteration_continues_the_same_momentum_sequence(burn_in_iters):
    def momenta(iterations):
        with EventStorage(iterations[0]) as storage:
            hook = TeacherEMA(momentum=0.95, burn_in_iters=burn_in_iters)  # a fresh hook, as after --resume
            run_steps(hook, attach(hook, Twin(0.0, 1.0), storage), storage, iterations)
            return storage.history("ema_momentum").values()

    uninterrupted = momenta(list(range(12)))
    for start in (1, 3, 4, 7):
        resumed = momenta(list(range(start, 12)))
        assert resumed == [(m, it) for m, it in uninterrupted if it >= start], start
    first_iteration = max(burn_in_iters - 1, 0)
    assert uninterrupted[0][1] == first_iteration
    assert uninterrupted[0][0] == (0.0 if burn_in_iters else 0.5)


def test_teacher_ema_reaches_the_model_inside_a_data_parallel_wrapper():
    model = Twin(teacher_value=0.0, student_value=1.0)
    wrapped = nn.DataParallel(model)
    assert unwrap_model(wrapped) is model
    with EventStorage(0) as storage:
        hook = TeacherEMA(momentum=0.75)
        run_steps(hook, attach(hook, wrapped, storage), storage, [5])  # past the warm-up: m = 0.75
    assert model.teacher.weight.item() == pytest.approx(0.25)


def test_teacher_ema_rejects_a_momentum_outside_0_1():
    with pytest.raises(ValueError, match="EMA_MOMENTUM"):
        TeacherEMA(momentum=1.5)


def test_pseudo_label_statistics_hand_the_models_record_to_the_diagnostics_and_skip_steps_without_one():
    calls = []

    def diagnostics(record, device):
        calls.append((record, device))
        return {"pseudo/boxes_per_image_cls": 2.0, "pseudo/precision": 0.5}

    model = SimpleNamespace(last_pseudo_labels=None, device="cpu")
    with EventStorage(0) as storage:
        hook = PseudoLabelStatistics(diagnostics)
        trainer = attach(hook, model, storage)
        run_steps(hook, trainer, storage, [0])  # burn-in: no record, nothing written
        assert calls == [] and "pseudo/precision" not in storage.latest()
        model.last_pseudo_labels = "the record"
        run_steps(hook, trainer, storage, [1])
        assert calls == [("the record", "cpu")]
        assert storage.latest()["pseudo/boxes_per_image_cls"] == (2.0, 1)
        assert storage.latest()["pseudo/precision"] == (0.5, 1)


def test_pseudo_label_statistics_read_the_record_of_the_model_inside_a_data_parallel_wrapper():
    class Recording(nn.Module):
        device = "cpu"
        last_pseudo_labels = "the record"

    calls = []
    with EventStorage(0) as storage:
        hook = PseudoLabelStatistics(lambda record, device: calls.append(record) or {"pseudo/recall": 0.25})
        run_steps(hook, attach(hook, nn.DataParallel(Recording()), storage), storage, [3])
        assert calls == ["the record"] and storage.latest()["pseudo/recall"] == (0.25, 3)


def put_boxes(storage, counts):
    """A before_hook putting ``counts[it]`` pseudo boxes per image at iteration ``it`` (None: not put)."""
    def before(it):
        if counts[it] is not None:
            storage.put_scalar("pseudo/boxes_per_image_cls", counts[it])
    return before


def warnings_of(captured):
    return [r for r in captured if r.levelno == logging.WARNING and "No pseudo box" in r.getMessage()]


def test_no_pseudo_box_warning_after_patience_zero_iterations_in_a_row(captured):
    counts = [0.0, 0.0, 2.0, 0.0, 0.0, 0.0]
    with EventStorage(0) as storage:
        hook = NoPseudoBoxWarning(patience=3)
        run_steps(hook, attach(hook, None, storage), storage, range(6), put_boxes(storage, counts))
    warned = warnings_of(captured)
    assert len(warned) == 1  # iterations 0-1 were reset by iteration 2's boxes
    message = warned[0].getMessage()
    assert "3 iterations in a row (iterations 3 to 5)" in message
    assert "class-list mismatch" in message and "BURN_IN_ITERS" in message and "CLS_PSEUDO_THRESH" in message


def test_no_pseudo_box_warning_skips_iterations_without_pseudo_labels(captured):
    # Burn-in iterations (no pseudo/ scalars) neither count nor reset the streak.
    counts = [None, None, None, 0.0, None, 0.0]
    with EventStorage(0) as storage:
        hook = NoPseudoBoxWarning(patience=2)
        run_steps(hook, attach(hook, None, storage), storage, range(6), put_boxes(storage, counts))
    assert len(warnings_of(captured)) == 1


def test_no_pseudo_box_warning_repeats_every_patience_iterations_and_0_disables(captured):
    with EventStorage(0) as storage:
        hook = NoPseudoBoxWarning(patience=2)
        run_steps(hook, attach(hook, None, storage), storage, range(6), put_boxes(storage, [0.0] * 6))
    assert len(warnings_of(captured)) == 3
    captured.clear()
    with EventStorage(0) as storage:
        hook = NoPseudoBoxWarning(patience=0)
        run_steps(hook, attach(hook, None, storage), storage, range(6), put_boxes(storage, [0.0] * 6))
    assert warnings_of(captured) == []


def test_pseudo_label_printer_logs_smoothed_pseudo_stats_and_momentum(captured):
    with EventStorage(0) as storage:
        PseudoLabelPrinter().write()  # nothing logged yet: no line
        for it, boxes in enumerate([1.0, 5.0, 3.0]):
            storage.iter = it
            storage.put_scalar("pseudo/boxes_per_image_cls", boxes)
            storage.put_scalar("pseudo/precision_at_0.7", 0.5)  # other thresholds: metrics.json only
            storage.put_scalar("ema_momentum", 0.999, smoothing_hint=False)
            storage.put_scalar("sup_loss_cls", 1.0)
        printer = PseudoLabelPrinter()
        printer.write()
        storage.iter = 3  # after training: Detectron2 writes once more, with nothing new to print
        printer.write()
    lines = [r.getMessage() for r in captured if "pseudo/" in r.getMessage()]
    assert lines == [" iter: 2  ema_momentum: 0.999  pseudo/boxes_per_image_cls: 3"]


def test_skipped_unlabeled_images_are_logged_every_period_and_after_the_last_iteration():
    loader = SimpleNamespace(num_skipped_unlabeled=0)
    with EventStorage(0) as storage:
        hook = SkippedUnlabeledImages(loader, period=2)
        trainer = attach(hook, None, storage)
        trainer.max_iter = 5
        run_steps(hook, trainer, storage, range(5), lambda it: setattr(loader, "num_skipped_unlabeled", 3 * it))
        assert storage.history(SkippedUnlabeledImages.KEY).values() == [(3, 1), (9, 3), (12, 4)]


def test_skipped_unlabeled_images_are_summed_over_ranks(monkeypatch):
    monkeypatch.setattr(hooks_module.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(hooks_module.comm, "all_gather", lambda count: [count, 5])  # rank 1 skipped 5
    loader = SimpleNamespace(num_skipped_unlabeled=2)
    with EventStorage(0) as storage:
        hook = SkippedUnlabeledImages(loader, period=1)
        trainer = attach(hook, None, storage)
        trainer.max_iter = 1
        run_steps(hook, trainer, storage, range(1))
        assert storage.history(SkippedUnlabeledImages.KEY).values() == [(7, 0)]
