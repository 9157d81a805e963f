"""The SoftTeacher meta-architecture: construction, losses, pseudo-label statistics, edge cases, eval, loading."""
import math

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from soft_teacher.diagnostics import PseudoLabelDiagnostics
from soft_teacher.modeling import SoftTeacher
from soft_teacher.modeling import soft_teacher as soft_teacher_module

SUP_KEYS = {"sup_loss_rpn_cls", "sup_loss_rpn_loc", "sup_loss_cls", "sup_loss_box_reg"}
UNSUP_KEYS = {"unsup_loss_rpn_cls", "unsup_loss_rpn_loc", "unsup_loss_cls", "unsup_loss_box_reg"}
TEACHER_SIZE = (64, 96)
STUDENT_SIZE = (64, 96)


def affine(scale=1.0, tx=0.0, ty=0.0, degrees=0.0, cx=0.0, cy=0.0):
    """Scale, then rotate about (cx, cy) of the scaled image, then translate."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    rotate = torch.tensor([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]])
    return torch.tensor([[1.0, 0, tx], [0, 1, ty], [0, 0, 1]]) @ rotate @ torch.diag(torch.tensor([scale, scale, 1]))


def random_image(size, seed):
    return torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def labeled(seed, boxes=((10.0, 10, 40, 50),), classes=(1,), size=(64, 80)):
    instances = Instances(size, gt_boxes=Boxes(torch.tensor(boxes).view(-1, 4)), gt_classes=torch.tensor(classes))
    return {
        "file_name": f"labeled_{seed}.jpg", "image_id": seed, "height": size[0], "width": size[1],
        "image": random_image(size, seed), "instances": instances, "transform_matrix": torch.eye(3),
    }


def unlabeled(seed, a_teacher=None, a_student=None, hidden=None):
    a_teacher = torch.eye(3) if a_teacher is None else a_teacher
    a_student = torch.eye(3) if a_student is None else a_student
    data = {
        "file_name": f"unlabeled_{seed}.jpg", "image_id": 100 + seed, "height": 128, "width": 192,
        "teacher": {"image": random_image(TEACHER_SIZE, 100 + seed), "transform_matrix": a_teacher},
        "student": {"image": random_image(STUDENT_SIZE, 200 + seed), "transform_matrix": a_student},
    }
    if hidden is not None:
        boxes, classes = hidden
        data["hidden_instances"] = Instances(
            (128, 192), gt_boxes=Boxes(torch.tensor(boxes).view(-1, 4)), gt_classes=torch.tensor(classes)
        )
    return data


def batch(unlabeled_dicts=None, labeled_dicts=None):
    return {
        "labeled": labeled_dicts or [labeled(0), labeled(1)],
        "unlabeled": unlabeled_dicts or [unlabeled(0), unlabeled(1)],
    }


def use_known_teacher(model, monkeypatch, per_image):
    """Make the teacher detect exactly ``per_image[i] = [(box, class, score), ...]`` on image i (teacher view)."""

    def known_inference(predictions, proposals):
        results = []
        for proposal, detections in zip(proposals, per_image):
            boxes = [d[0] for d in detections]
            results.append(
                Instances(
                    proposal.image_size,
                    pred_boxes=Boxes(torch.tensor(boxes).view(-1, 4)),
                    pred_classes=torch.tensor([d[1] for d in detections], dtype=torch.long),
                    scores=torch.tensor([d[2] for d in detections]),
                )
            )
        return results, [torch.arange(len(r)) for r in results]

    monkeypatch.setattr(model.teacher.roi_heads.box_predictor, "inference", known_inference)


def build_tiny_model(cfg, norm="BN"):
    """The tiny model in training mode, its backbone normalised by ``norm``."""
    torch.manual_seed(0)
    cfg.SOFT_TEACHER.REG_UNCERTAINTY_THRESH = 1.0  # every candidate supervises regression
    cfg.MODEL.RESNETS.NORM = norm
    model = build_model(cfg)
    model.train()
    return model


@pytest.fixture
def model(tiny_cfg):
    """The tiny model with a BatchNorm backbone (the shapes configs')."""
    return build_tiny_model(tiny_cfg)


TWO_CONFIDENT_BOXES = [[((10.0, 10, 30, 30), 1, 0.95), ((40.0, 10, 60, 40), 2, 0.7)], []]


def train_step(model, data, iteration=0, backward=True):
    """The losses of one step, and the step's scalars: the model's own and, as the trainer's statistics hook
    adds them, those of its pseudo labels."""
    with EventStorage(start_iter=iteration) as storage:
        losses = model(data)
        if backward:
            sum(losses.values()).backward()
        scalars = {name: value for name, (value, _) in storage.latest().items()}
    if model.last_pseudo_labels is not None:
        diagnostics = PseudoLabelDiagnostics(model.cls_pseudo_thresh, model.initial_score_thresh, 3, None, (), 0, 2.0)
        scalars.update(diagnostics(model.last_pseudo_labels))
    return losses, scalars


def assert_finite_and_connected(losses, model):
    assert set(losses) == SUP_KEYS | UNSUP_KEYS
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values()), losses
    grads = [p.grad for p in model.student.parameters() if p.grad is not None]
    assert len(grads) == len(list(model.student.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_build_model_gives_two_identical_detectors_and_a_frozen_teacher(tiny_cfg):
    model = build_model(tiny_cfg)
    assert isinstance(model, SoftTeacher)
    assert isinstance(model.student, GeneralizedRCNN) and isinstance(model.teacher, GeneralizedRCNN)
    student, teacher = model.student.state_dict(), model.teacher.state_dict()
    assert student.keys() == teacher.keys() and all(torch.equal(student[k], teacher[k]) for k in student)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert all(k.startswith(("teacher.", "student.")) for k in model.state_dict())
    assert model.device == torch.device("cpu")


def test_model_train_keeps_the_teacher_in_eval_mode(model):
    model.train()
    assert model.student.training and not model.teacher.training
    assert not any(m.training for m in model.teacher.modules())


def test_training_returns_the_supervised_and_the_weighted_unsupervised_losses(model, monkeypatch):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    losses, _ = train_step(model, batch())
    assert_finite_and_connected(losses, model)


def test_unsupervised_losses_are_multiplied_by_the_unsup_weight(model, monkeypatch):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    results = {}
    for weight in (1.0, 4.0):
        model.unsup_weight = weight
        torch.manual_seed(0)  # same proposal sampling and jitter in both runs
        results[weight], _ = train_step(model, batch(), backward=False)
    for key in UNSUP_KEYS:
        assert results[4.0][key].item() == pytest.approx(4 * results[1.0][key].item(), rel=1e-5), key
    for key in SUP_KEYS:
        assert results[4.0][key].item() == pytest.approx(results[1.0][key].item(), rel=1e-5), key


@pytest.mark.parametrize("enabled, keys", [
    (("rpn",), {"unsup_loss_rpn_cls", "unsup_loss_rpn_loc"}),
    (("roi_cls", "roi_reg"), {"unsup_loss_cls", "unsup_loss_box_reg"}),
    (("roi_objectness",), {"unsup_loss_cls"}),
])
def test_unsup_losses_selects_the_unsupervised_losses_for_ablations(model, monkeypatch, enabled, keys):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    model.unsup_losses = enabled
    losses, _ = train_step(model, batch())
    assert set(losses) == SUP_KEYS | keys


def test_unknown_unsup_loss_names_the_valid_ones(tiny_cfg):
    tiny_cfg.SOFT_TEACHER.UNSUP_LOSSES = ("rpn", "roi")
    with pytest.raises(ValueError, match="must be a subset of"):
        build_model(tiny_cfg)


@pytest.mark.parametrize("enabled, class_agnostic", [(("roi_cls",), False), (("roi_objectness",), True)])
def test_roi_objectness_drops_the_pseudo_classes_from_the_classification_loss(
        model, monkeypatch, enabled, class_agnostic):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    seen = []
    real_loss = soft_teacher_module.unsup_roi_cls_loss

    def spy(*args, **kwargs):
        seen.append(kwargs.get("class_agnostic"))
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(soft_teacher_module, "unsup_roi_cls_loss", spy)
    model.unsup_losses = enabled
    train_step(model, batch(), backward=False)
    assert seen == [class_agnostic]


def test_both_forms_of_the_roi_classification_loss_are_refused(tiny_cfg):
    tiny_cfg.SOFT_TEACHER.UNSUP_LOSSES = ("rpn", "roi_cls", "roi_objectness")
    with pytest.raises(ValueError, match="keep one"):
        build_model(tiny_cfg)


def test_a_plain_list_gives_the_supervised_losses_only(model):
    losses, _ = train_step(model, [labeled(0), labeled(1)])
    assert set(losses) == SUP_KEYS


def test_burn_in_gives_the_supervised_losses_only(tiny_cfg):
    tiny_cfg.SOFT_TEACHER.BURN_IN_ITERS = 10
    model = build_model(tiny_cfg)
    assert set(train_step(model, batch(), iteration=9, backward=False)[0]) == SUP_KEYS
    assert set(train_step(model, batch(), iteration=10, backward=False)[0]) == SUP_KEYS | UNSUP_KEYS


def test_backward_never_reaches_the_teacher(model, monkeypatch):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    train_step(model, batch())
    assert all(p.grad is None for p in model.teacher.parameters())


def test_training_keeps_the_steps_pseudo_labels_and_burn_in_keeps_none(model, monkeypatch):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    a_student = affine(tx=4, ty=2)
    hidden = ([[0.0, 0, 8, 8]], [0])
    train_step(model, batch([unlabeled(i, affine(), a_student, hidden) for i in range(2)]), backward=False)
    record = model.last_pseudo_labels
    assert [len(c) for c in record.candidates] == [2, 0]  # teacher view, score >= 0.5
    assert torch.equal(record.candidates[0].gt_boxes.tensor[0], torch.tensor([10.0, 10, 30, 30]))
    assert torch.equal(record.cls[0].gt_boxes.tensor, torch.tensor([[14.0, 12, 34, 32]]))  # student view, >= 0.9
    assert [len(r) for r in record.rpn] == [1, 0] and [len(r) for r in record.reg] == [2, 0]
    assert torch.equal(record.teacher_matrices[0], affine())
    assert torch.equal(record.hidden_instances[1].gt_boxes.tensor, torch.tensor([[0.0, 0, 8, 8]]))
    model.burn_in_iters = 5
    train_step(model, batch(), iteration=4, backward=False)
    assert model.last_pseudo_labels is None


def test_the_steps_pseudo_labels_give_the_statistics(model, monkeypatch):
    # image 0: A (score 0.95, class 1) and B (0.7, class 2) pass the initial 0.5; C (0.3) does not
    use_known_teacher(
        model,
        monkeypatch,
        [[((10.0, 10, 30, 30), 1, 0.95), ((40.0, 10, 60, 40), 2, 0.7), ((70.0, 40, 90, 60), 0, 0.3)], []],
    )
    a_teacher = affine(scale=0.5)  # the teacher view is the original at half size
    a_student = affine(scale=0.5, tx=4, ty=2)
    # hidden annotations (original frame): image 0 has A's object (teacher view [10, 10, 30, 30]) and
    # C's, image 1 has one object; the classification set (score >= 0.9) is {A}
    hidden = [([[20.0, 20, 60, 60], [140.0, 80, 180, 120]], [1, 0]), ([[0.0, 0, 40, 40]], [2])]
    data = batch([unlabeled(i, a_teacher, a_student, hidden[i]) for i in range(2)])
    _, scalars = train_step(model, data, backward=False)
    assert scalars["pseudo/boxes_per_image_rpn"] == pytest.approx(0.5)  # {A} over 2 images
    assert scalars["pseudo/boxes_per_image_cls"] == pytest.approx(0.5)
    assert scalars["pseudo/boxes_per_image_reg"] == pytest.approx(1.0)  # {A, B}: uncertainty < 1.0
    assert scalars["pseudo/teacher_score_mean"] == pytest.approx((0.95 + 0.7) / 2)
    assert scalars["pseudo/precision"] == pytest.approx(1.0)
    assert scalars["pseudo/recall"] == pytest.approx(1 / 3)
    assert "unsup/roi_head/num_fg_samples" in scalars  # the student's own unsup scalars, apart


def test_the_student_rpn_learns_the_high_score_pseudo_boxes_in_the_student_view(model, monkeypatch):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    rpn_targets = []
    rpn_forward = model.student.proposal_generator.forward

    def recording_forward(images, features, gt_instances=None):
        rpn_targets.append(gt_instances)
        return rpn_forward(images, features, gt_instances)

    monkeypatch.setattr(model.student.proposal_generator, "forward", recording_forward)
    train_step(model, batch([unlabeled(i, affine(), affine(tx=5, ty=3)) for i in range(2)]), backward=False)
    supervised, unsupervised = rpn_targets
    assert unsupervised[0].image_size == STUDENT_SIZE
    assert torch.equal(unsupervised[0].gt_boxes.tensor, torch.tensor([[15.0, 13, 35, 33]]))  # A moved by M
    assert len(unsupervised[1]) == 0


def test_labeled_dicts_without_instances_are_refused_with_what_they_lack(tiny_cfg, monkeypatch):
    model = build_model(tiny_cfg).train()
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    bare = [labeled(0), labeled(1)]
    del bare[1]["instances"]
    with pytest.raises(ValueError, match="'instances'"):
        train_step(model, batch(labeled_dicts=bare), backward=False)


CORNER_AND_CENTRE = [[((0.0, 0, 12, 12), 1, 0.95)], [((40.0, 40, 56, 56), 2, 0.95)]]


@pytest.mark.parametrize(
    "detections, rotation, labeled_boxes, expected_rpn_boxes_per_image",
    [
        pytest.param([[], []], 0.0, ((10.0, 10, 40, 50),), 0.0, id="no pseudo box in the whole batch"),
        pytest.param(TWO_CONFIDENT_BOXES, 0.0, ((10.0, 10, 40, 50),), 0.5, id="no pseudo box in one image"),
        pytest.param(CORNER_AND_CENTRE, 45.0, ((10.0, 10, 40, 50),), 0.5, id="a box leaves the view by rotation"),
        pytest.param(TWO_CONFIDENT_BOXES, 0.0, (), 0.5, id="an empty labeled image"),
    ],
)
def test_edge_cases_give_finite_losses_and_gradients(
    model, monkeypatch, detections, rotation, labeled_boxes, expected_rpn_boxes_per_image
):
    use_known_teacher(model, monkeypatch, detections)
    a_student = affine(degrees=rotation, cx=48, cy=32)  # about the student view's centre
    labeled_dicts = [labeled(0, labeled_boxes, (1,) * len(labeled_boxes)), labeled(1)]
    data = batch([unlabeled(i, affine(), a_student) for i in range(2)], labeled_dicts)
    losses, scalars = train_step(model, data)
    assert scalars["pseudo/boxes_per_image_rpn"] == pytest.approx(expected_rpn_boxes_per_image)
    assert_finite_and_connected(losses, model)


def test_a_frozen_batch_norm_backbone_as_in_the_coco_configs_gives_finite_losses_and_gradients(tiny_cfg, monkeypatch):
    model = build_tiny_model(tiny_cfg, norm="FrozenBN")
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    data = batch([unlabeled(i, affine(), affine(degrees=20, cx=48, cy=32)) for i in range(2)])
    losses, scalars = train_step(model, data)
    assert scalars["pseudo/boxes_per_image_rpn"] == pytest.approx(0.5)
    assert_finite_and_connected(losses, model)


def test_mixed_precision_training_gives_finite_losses(model, monkeypatch):
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    data = batch([unlabeled(i, affine(scale=0.5), affine(scale=0.6, degrees=20, cx=48, cy=32)) for i in range(2)])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        losses, _ = train_step(model, data)
    assert_finite_and_connected(losses, model)


@pytest.mark.parametrize("eval_model, predictor", [("teacher", "teacher"), ("both", "teacher"), ("student", "student")])
def test_eval_mode_predicts_with_the_configured_detector(tiny_cfg, eval_model, predictor):
    tiny_cfg.SOFT_TEACHER.EVAL_MODEL = eval_model
    model = build_model(tiny_cfg)
    with torch.no_grad():
        model.student.roi_heads.box_predictor.cls_score.bias[0] += 3.0  # the two detectors now differ
    model.eval()
    inputs = [{"image": random_image((64, 80), 0), "height": 128, "width": 160}]
    with torch.no_grad():
        predictions = model(inputs)[0]["instances"]
        expected = getattr(model, predictor)(inputs)[0]["instances"]
        other = getattr(model, "student" if predictor == "teacher" else "teacher")(inputs)[0]["instances"]
    assert predictions.image_size == (128, 160)
    assert torch.equal(predictions.scores, expected.scores)
    assert not torch.equal(predictions.scores, other.scores)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["SOFT_TEACHER.EVAL_MODEL", "best"], "EVAL_MODEL"),
        (["SOFT_TEACHER.JITTER_TIMES", 1], "JITTER_TIMES"),
        (["MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", True], "USE_SIGMOID_CE"),
        (
            ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True],
            "StandardROIHeads",
        ),
    ],
)
def test_unsupported_settings_are_refused_with_the_key_to_change(tiny_cfg, overrides, message):
    tiny_cfg.merge_from_list(overrides)
    with pytest.raises(ValueError, match=message):
        build_model(tiny_cfg)


def test_stock_detectron2_checkpointer_loads_a_plain_detector_into_both_models(tiny_cfg, tmp_path):
    model = build_model(tiny_cfg)
    plain = GeneralizedRCNN(tiny_cfg.clone())  # the same detector, other random weights
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pth")

    DetectionCheckpointer(model).load(str(tmp_path / "plain.pth"))

    for name, value in plain.state_dict().items():
        assert torch.equal(model.student.state_dict()[name], value), name
        assert torch.equal(model.teacher.state_dict()[name], value), name


@pytest.mark.parametrize("strong_view_bn_stats", [False, True])
def test_batch_norm_running_statistics_follow_the_strong_views_only_when_configured(
    tiny_cfg, monkeypatch, strong_view_bn_stats
):
    tiny_cfg.SOFT_TEACHER.STRONG_VIEW_BN_STATS = strong_view_bn_stats
    model = build_model(tiny_cfg).train()
    use_known_teacher(model, monkeypatch, TWO_CONFIDENT_BOXES)
    bn = model.student.backbone.bottom_up.stem.conv1.norm
    before = bn.running_mean.clone()
    data = batch()
    tracked = bn.num_batches_tracked.clone()
    with EventStorage():
        model.unsupervised_losses(data["unlabeled"])
    assert torch.equal(bn.running_mean, before) != strong_view_bn_stats
    assert torch.equal(bn.num_batches_tracked, tracked) != strong_view_bn_stats
    assert bn.momentum == 0.1  # restored after the block


def test_plain_weights_of_another_shape_are_skipped_not_fatal(tiny_cfg, tmp_path):
    model = build_model(tiny_cfg)
    other = tiny_cfg.clone()
    other.MODEL.ROI_HEADS.NUM_CLASSES = 5  # another class count: the box predictor's shapes differ
    plain = GeneralizedRCNN(other)
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pth")
    predictor_before = model.student.roi_heads.box_predictor.cls_score.weight.clone()
    with torch.no_grad():
        model.teacher.roi_heads.box_predictor.cls_score.weight.add_(1.0)

    DetectionCheckpointer(model).load(str(tmp_path / "plain.pth"))

    assert torch.equal(model.student.roi_heads.box_predictor.cls_score.weight, predictor_before)
    # The teacher is a copy of the student, the skipped weights included.
    assert torch.equal(model.teacher.roi_heads.box_predictor.cls_score.weight, predictor_before)
    conv = "backbone.bottom_up.stem.conv1.weight"
    assert torch.equal(model.teacher.state_dict()[conv], plain.state_dict()[conv])
