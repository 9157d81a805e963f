"""Teacher pseudo-labelling: detections, initial score filter, box-jitter uncertainty, soft weights."""
import math

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.modeling.proposal_generator import rpn as rpn_module
from detectron2.structures import Boxes, Instances
from soft_teacher.modeling.pseudo_labels import (
    jitter_boxes,
    jitter_uncertainty,
    regression_uncertainty,
    split_pseudo_labels,
    teacher_background_probs,
    teacher_detections,
    teacher_pseudo_labels,
    training_proposal_counts,
)

IMAGE_SIZE = (128, 128)


def random_views(num_images, generator_seed=0):
    g = torch.Generator().manual_seed(generator_seed)
    images = [torch.randint(0, 256, (3, *IMAGE_SIZE), dtype=torch.uint8, generator=g) for _ in range(num_images)]
    return [{"image": image} for image in images]


@pytest.fixture
def teacher(tiny_cfg):
    torch.manual_seed(0)
    return build_model(tiny_cfg).teacher


def teacher_features(teacher, views):
    with torch.no_grad():
        return teacher.backbone(teacher.preprocess_image(views).tensor)


def detections(boxes, classes, scores=None):
    scores = torch.ones(len(boxes)) if scores is None else torch.tensor(scores)
    return Instances(
        IMAGE_SIZE, pred_boxes=Boxes(torch.tensor(boxes)), pred_classes=torch.tensor(classes), scores=scores
    )


def test_jitter_offsets_have_std_scale_times_width_and_height():
    box = torch.tensor([[10.0, 20, 50, 40]])  # w 40, h 20
    copies = jitter_boxes(box, times=20000, scale=0.06, generator=torch.Generator().manual_seed(0))
    assert copies.shape == (20000, 1, 4)
    offsets = copies[:, 0] - box
    assert offsets.mean(dim=0).abs().max() < 0.05
    expected_std = torch.tensor([0.06 * 40, 0.06 * 20, 0.06 * 40, 0.06 * 20])
    assert torch.allclose(offsets.std(dim=0), expected_std, rtol=0.03)


def test_regression_uncertainty_is_relative_std_averaged_over_coordinates():
    regressed = torch.tensor([[[0.0, 0, 10, 10]], [[2.0, 0, 12, 10]]])  # 2 copies of 1 box
    # x1 and x2 have unbiased std sqrt(2); the mean box [1, 0, 11, 10] is 10 x 10; y never moves
    expected = (math.sqrt(2) / 10 * 2) / 4
    assert regression_uncertainty(regressed).tolist() == pytest.approx([expected])


def test_a_teacher_with_exact_regression_gives_zero_uncertainty(teacher, monkeypatch):
    true_boxes = torch.tensor([[10.0, 10, 40, 50], [70.0, 60, 110, 100]])

    def exact_regression(predictions, proposals):  # every jittered copy regresses onto its object
        return [true_boxes[torch.cdist(p.proposal_boxes.tensor, true_boxes).argmin(dim=1)] for p in proposals]

    monkeypatch.setattr(teacher.roi_heads.box_predictor, "predict_boxes_for_gt_classes", exact_regression)
    views = random_views(1)
    (unc,) = jitter_uncertainty(
        teacher.roi_heads, teacher_features(teacher, views), [detections(true_boxes.tolist(), [0, 2])], 10, 0.06
    )
    assert torch.allclose(unc, torch.zeros(2), atol=1e-6)


def test_jitter_uncertainty_regresses_each_copy_for_its_detections_class(teacher):
    predictor = teacher.roi_heads.box_predictor
    with torch.no_grad():
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        # class 1 doubles the width (dw = log 2, times the box2box weight 5); class 0 keeps every copy
        predictor.bbox_pred.bias[1 * 4 + 2] = 5 * math.log(2)
    views = random_views(1)
    torch.manual_seed(0)
    (unc,) = jitter_uncertainty(
        teacher.roi_heads,
        teacher_features(teacher, views),
        [detections([[40.0, 20, 60, 40], [40.0, 70, 60, 90]], [0, 1])],
        times=4000,
        scale=0.06,
    )
    # class 0: each coordinate keeps its N(0, 0.06 * 20) offset, relative to a 20 px box: 0.06.
    # class 1: x1' = centre - width = x1 + 1.5 e1 - 0.5 e2, std 0.06 * 20 * sqrt(2.5), over a 40 px
    # wide mean box; y keeps 0.06.
    x_unc = 0.06 * 20 * math.sqrt(2.5) / 40
    assert unc.tolist() == pytest.approx([0.06, (2 * x_unc + 2 * 0.06) / 4], rel=0.03)


def test_jitter_uncertainty_uses_one_box_head_call_for_the_whole_batch(teacher):
    rows_per_call = []
    teacher.roi_heads.box_head.register_forward_hook(lambda module, inputs, output: rows_per_call.append(len(output)))
    views = random_views(2)
    dets = [
        detections([[10.0, 10, 40, 50], [60.0, 60, 90, 100], [5.0, 70, 30, 120]], [0, 1, 2]),
        detections([[20.0, 30, 70, 90], [80.0, 10, 120, 40]], [2, 2]),
    ]
    uncertainties = jitter_uncertainty(teacher.roi_heads, teacher_features(teacher, views), dets, 10, 0.06)
    assert rows_per_call == [5 * 10]
    assert [u.shape for u in uncertainties] == [(3,), (2,)]
    assert all(torch.isfinite(u).all() for u in uncertainties)


def test_teacher_detections_are_detectron2_inference_with_the_training_proposal_counts(teacher):
    views = random_views(2)
    _, features, dets = teacher_detections(teacher, views)
    rpn = teacher.proposal_generator
    with torch.no_grad():
        test_counts = teacher.inference(views, do_postprocess=False)
        rpn.pre_nms_topk[False], rpn.post_nms_topk[False] = rpn.pre_nms_topk[True], rpn.post_nms_topk[True]
        expected = teacher.inference(views, do_postprocess=False)
    for det, exp in zip(dets, expected):
        assert det.image_size == IMAGE_SIZE
        assert torch.equal(det.pred_boxes.tensor, exp.pred_boxes.tensor)
        assert torch.equal(det.scores, exp.scores)
    assert any(len(d) != len(t) or not torch.equal(d.scores, t.scores) for d, t in zip(dets, test_counts))
    assert set(features) == set(teacher.backbone.output_shape())


@pytest.fixture
def proposal_counts(monkeypatch):
    """The (pre_nms_topk, post_nms_topk) of every RPN proposal selection, in call order."""
    calls = []
    original = rpn_module.find_top_rpn_proposals

    def recording(proposals, pred_objectness_logits, image_sizes, nms_thresh, pre_nms_topk, post_nms_topk,
                  *args, **kwargs):
        calls.append((pre_nms_topk, post_nms_topk))
        return original(proposals, pred_objectness_logits, image_sizes, nms_thresh, pre_nms_topk, post_nms_topk,
                        *args, **kwargs)

    monkeypatch.setattr(rpn_module, "find_top_rpn_proposals", recording)
    return calls


def test_pseudo_labelling_uses_the_training_proposal_counts_and_evaluation_the_test_ones(tiny_cfg, proposal_counts):
    # tiny_cfg: PRE/POST_NMS_TOPK_TRAIN 200/100, PRE/POST_NMS_TOPK_TEST 100/50 (as the reference's
    # rpn_proposal train_cfg in extract_teacher_info; the box head keeps its test settings).
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.eval()
    train_counts = (tiny_cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN, tiny_cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN)
    test_counts = (tiny_cfg.MODEL.RPN.PRE_NMS_TOPK_TEST, tiny_cfg.MODEL.RPN.POST_NMS_TOPK_TEST)
    assert train_counts == (200, 100) and test_counts == (100, 50)
    teacher_pseudo_labels(model.teacher, random_views(2), 0.5, 10, 0.06)
    assert proposal_counts == [train_counts]
    model([{**view, "height": 128, "width": 128} for view in random_views(2)])  # evaluation of the teacher
    assert proposal_counts == [train_counts, test_counts]
    rpn = model.teacher.proposal_generator
    assert rpn.pre_nms_topk == {True: 200, False: 100} and rpn.post_nms_topk == {True: 100, False: 50}


def test_training_proposal_counts_are_restored_after_an_error(teacher, monkeypatch):
    rpn = teacher.proposal_generator
    before = (dict(rpn.pre_nms_topk), dict(rpn.post_nms_topk))

    def failing(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(rpn_module, "find_top_rpn_proposals", failing)
    with pytest.raises(RuntimeError, match="boom"):
        teacher_detections(teacher, random_views(1))
    assert (rpn.pre_nms_topk, rpn.post_nms_topk) == before
    with training_proposal_counts(rpn):
        assert rpn.pre_nms_topk[False] == 200 and rpn.post_nms_topk[False] == 100
    assert (rpn.pre_nms_topk, rpn.post_nms_topk) == before


def test_pseudo_labels_keep_detections_scoring_at_least_the_initial_threshold(teacher, monkeypatch):
    known = detections([[10.0, 10, 40, 50], [60.0, 60, 90, 100], [5.0, 70, 30, 120]], [1, 2, 0], [0.95, 0.5, 0.49])

    def known_detections(predictions, proposals):
        return [known for _ in proposals], [torch.arange(len(known)) for _ in proposals]

    monkeypatch.setattr(teacher.roi_heads.box_predictor, "inference", known_detections)
    out = teacher_pseudo_labels(teacher, random_views(2), score_thresh=0.5, jitter_times=10, jitter_scale=0.06)
    for pseudo in out.pseudo_labels:
        assert pseudo.gt_classes.tolist() == [1, 2]
        assert pseudo.scores.tolist() == pytest.approx([0.95, 0.5])
        assert torch.equal(pseudo.gt_boxes.tensor, known.pred_boxes.tensor[:2])
        assert pseudo.uncertainty.shape == (2,) and torch.isfinite(pseudo.uncertainty).all()
        assert not any(v.requires_grad for v in (pseudo.gt_boxes.tensor, pseudo.scores, pseudo.uncertainty))
    assert out.images.image_sizes == [IMAGE_SIZE, IMAGE_SIZE]
    assert not any(f.requires_grad for f in out.features.values())


def test_pseudo_labelling_refuses_a_teacher_in_train_mode(teacher):
    teacher.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        teacher_pseudo_labels(teacher, random_views(1), 0.5, 10, 0.06)


def test_background_probability_is_the_teachers_softmax_background_column(teacher):
    cls_score = teacher.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        cls_score.weight.zero_()
        cls_score.bias.copy_(torch.tensor([0.0, 0.0, math.log(2), math.log(4)]))  # softmax (1, 1, 2, 4) / 8
    views = random_views(2)
    boxes = [Boxes(torch.tensor([[10.0, 10, 40, 50]])), Boxes(torch.tensor([[0.0, 0, 20, 20], [5.0, 5, 100, 90]]))]
    probs = teacher_background_probs(teacher.roi_heads, teacher_features(teacher, views), boxes)
    assert probs.tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_split_puts_each_candidate_in_the_sets_its_score_and_uncertainty_pass():
    pseudo = Instances(IMAGE_SIZE, scores=torch.tensor([0.875, 0.75, 0.625, 0.5]),
                       uncertainty=torch.tensor([0.5, 0.25, 0.125, 0.0]))
    masks = split_pseudo_labels(pseudo, rpn_thresh=0.75, cls_thresh=0.625, reg_uncertainty_thresh=0.25)
    assert {name: mask.tolist() for name, mask in masks.items()} == {
        "rpn": [True, True, False, False],  # score >= the threshold: the threshold itself passes
        "cls": [True, True, True, False],
        "reg": [False, False, True, True],  # uncertainty < the threshold: the threshold itself fails
    }
    empty = split_pseudo_labels(pseudo[:0], 0.75, 0.625, 0.25)
    assert all(mask.dtype == torch.bool and mask.shape == (0,) for mask in empty.values())
