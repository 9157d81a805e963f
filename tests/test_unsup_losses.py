"""The student's ROI losses on pseudo labels: soft-teacher classification and regression."""
import math

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from soft_teacher.modeling.unsup_losses import soft_weighted_cls_loss, unsup_roi_cls_loss, unsup_roi_reg_loss

IMAGE_SIZE = (128, 128)
TEACHER_BACKGROUND_PROB = 0.5
# a proposal on the pseudo box [10, 10, 50, 50] (foreground) and one far from it (background)
PROPOSALS = [[10.0, 10, 50, 50], [60.0, 60, 90, 90]]


def ce(logits, label):
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def test_soft_weighted_cls_loss_weighs_background_and_normalises_by_the_weight_sum():
    logits = torch.tensor([[2.0, 0, 0], [0.0, 0, 1], [0.0, 1, 0]])  # K = 2 classes + background
    gt_classes = torch.tensor([0, 2, 2])
    background_weights = torch.tensor([0.9, 0.5, 0.25])  # the first row is foreground: weight 1
    loss = soft_weighted_cls_loss(logits, gt_classes, background_weights)
    expected = (ce([2, 0, 0], 0) + 0.5 * ce([0, 0, 1], 2) + 0.25 * ce([0, 1, 0], 2)) / 1.75
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_soft_weighted_cls_loss_divides_by_at_least_one():
    logits = torch.tensor([[0.0, 3.0], [1.0, 0.0]])  # K = 1
    loss = soft_weighted_cls_loss(logits, torch.tensor([1, 1]), torch.tensor([0.1, 0.2]))
    assert loss.item() == pytest.approx(0.1 * ce([0, 3], 1) + 0.2 * ce([1, 0], 1), rel=1e-6)


def test_class_agnostic_loss_asks_foreground_for_any_class_and_keeps_the_background_weights():
    logits = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])  # K = 2; the first row's label says class 0
    loss = soft_weighted_cls_loss(logits, torch.tensor([0, 2]), torch.tensor([0.9, 0.5]), class_agnostic=True)
    total = math.exp(0) + math.exp(2) + math.exp(0)
    foreground = -math.log((math.exp(0) + math.exp(2)) / total)  # p(class 0) + p(class 1): the class is ignored
    expected = (foreground + 0.5 * ce([0, 0, 1], 2)) / 1.5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    named = soft_weighted_cls_loss(logits, torch.tensor([1, 2]), torch.tensor([0.9, 0.5]), class_agnostic=True)
    assert named.item() == pytest.approx(loss.item(), rel=1e-6)


def test_soft_weighted_cls_loss_of_no_proposals_is_zero_with_a_gradient():
    logits = torch.zeros((0, 4), requires_grad=True)
    loss = soft_weighted_cls_loss(logits, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


@pytest.fixture
def model(tiny_cfg):
    """A SoftTeacher whose logits are known: student (2, 0, 0, 0), teacher background probability 0.5."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    with torch.no_grad():
        for detector, bias in ((model.student, [2.0, 0, 0, 0]), (model.teacher, [0.0, 0, 0, math.log(3)])):
            detector.roi_heads.box_predictor.cls_score.weight.zero_()
            detector.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor(bias))
    return model


def features(detector, num_images=1):
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, *IMAGE_SIZE), dtype=torch.uint8, generator=g) for _ in range(num_images)]
    views = [{"image": image} for image in images]
    return detector.backbone(detector.preprocess_image(views).tensor)


def proposals(boxes):
    return Instances(IMAGE_SIZE, proposal_boxes=Boxes(torch.tensor(boxes)), objectness_logits=torch.zeros(len(boxes)))


def pseudo_labels(boxes, classes):
    return Instances(IMAGE_SIZE, gt_boxes=Boxes(torch.tensor(boxes).view(-1, 4)), gt_classes=torch.tensor(classes))


def cls_loss(model, props, pseudo, student_to_teacher=torch.eye(3), teacher_image_size=IMAGE_SIZE):
    with EventStorage():
        return unsup_roi_cls_loss(
            model.student.roi_heads,
            features(model.student, len(props)),
            props,
            pseudo,
            model.teacher.roi_heads,
            features(model.teacher, len(props)),
            [student_to_teacher] * len(props),
            [teacher_image_size] * len(props),
        )


def record_teacher_scored_boxes(model):
    """The boxes the teacher's box head pools, one (R, 4) tensor per call."""
    scored = []
    model.teacher.roi_heads.box_pooler.register_forward_pre_hook(
        lambda module, args: scored.append(torch.cat([b.tensor for b in args[1]]))
    )
    return scored


def test_cls_loss_with_a_known_teacher_background_probability(model):
    # Detectron2 appends the pseudo box to the proposals: 2 foreground + 1 background samples
    loss = cls_loss(model, [proposals(PROPOSALS)], [pseudo_labels([10.0, 10, 50, 50], [0])])
    student_logits = [2, 0, 0, 0]
    expected = (2 * ce(student_logits, 0) + TEACHER_BACKGROUND_PROB * ce(student_logits, 3)) / (
        2 + TEACHER_BACKGROUND_PROB
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_cls_loss_of_an_image_without_pseudo_boxes_is_its_weighted_background_terms(model):
    loss = cls_loss(model, [proposals(PROPOSALS)], [pseudo_labels([], [])])
    # two background samples of weight 0.5: sum of weights 1, so the loss is one background CE
    assert loss.item() == pytest.approx(ce([2, 0, 0, 0], 3), rel=1e-5)
    loss.backward()
    assert model.student.roi_heads.box_predictor.cls_score.weight.grad is not None


def test_cls_loss_scores_the_proposals_mapped_back_into_the_teacher_view(model):
    scored = record_teacher_scored_boxes(model)
    half = torch.diag(torch.tensor([0.5, 0.5, 1.0]))  # the teacher view is half the student view
    cls_loss(model, [proposals(PROPOSALS)], [pseudo_labels([10.0, 10, 50, 50], [0])], half)
    (boxes,) = scored
    expected = torch.tensor([[5.0, 5, 25, 25], [5.0, 5, 25, 25], [30.0, 30, 45, 45]])
    assert torch.equal(boxes[boxes[:, 0].argsort()], expected)


def test_proposals_mapped_into_the_teacher_view_are_clipped_to_the_teacher_image(model):
    # As the reference (Transform2D.transform_bboxes with the teacher img_shape): clip, drop nothing.
    scored = record_teacher_scored_boxes(model)
    shift = torch.tensor([[1.0, 0, 50], [0, 1, -20], [0, 0, 1]])  # student view -> teacher view
    cls_loss(model, [proposals(PROPOSALS)], [pseudo_labels([10.0, 10, 50, 50], [0])], shift, (100, 120))
    (boxes,) = scored
    # [10, 10, 50, 50] (the proposal and the appended pseudo box) -> [60, -10, 100, 30] -> y clipped at 0;
    # [60, 60, 90, 90] -> [110, 40, 140, 70] -> x clipped at the teacher width 120
    expected = torch.tensor([[60.0, 0, 100, 30], [60.0, 0, 100, 30], [110.0, 40, 120, 70]])
    assert torch.equal(boxes[boxes[:, 0].argsort()], expected)


def test_no_gradient_reaches_the_teacher_through_the_background_weights(model):
    model.teacher.requires_grad_(True)  # even a teacher that could take gradients gets none
    loss = cls_loss(model, [proposals(PROPOSALS)], [pseudo_labels([10.0, 10, 50, 50], [0])])
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())


def reg_loss(model, props, pseudo):
    with EventStorage():
        return unsup_roi_reg_loss(model.student.roi_heads, features(model.student, len(props)), props, pseudo)


def test_reg_loss_is_detectron2_box_regression_on_the_sampled_foreground(model):
    with torch.no_grad():
        model.student.roi_heads.box_predictor.bbox_pred.weight.zero_()
        model.student.roi_heads.box_predictor.bbox_pred.bias.zero_()  # predicted boxes = proposals
    loss = reg_loss(model, [proposals(PROPOSALS)], [pseudo_labels([12.0, 10, 52, 50], [0])])
    # foreground: proposal 0 (IoU 0.90), target dx = 10 * (32 - 30) / 40 = 0.5 (L1, beta 0), and the
    # appended pseudo box (target 0); the sum is normalised by the 3 sampled proposals
    assert loss.item() == pytest.approx(0.5 / 3, rel=1e-5)


def test_reg_loss_without_pseudo_boxes_is_zero_and_connected(model):
    loss = reg_loss(model, [proposals(PROPOSALS[:1]), proposals(PROPOSALS[1:])], [pseudo_labels([], [])] * 2)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
