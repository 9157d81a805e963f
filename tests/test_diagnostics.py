"""Pseudo-label diagnostics (soft_teacher.diagnostics): matching, counts and their statistics, the labeled set as
the reference, the pooled class shares and their warning, and the one call the trainer's hook makes."""
import logging

import pytest
import torch
from detectron2.structures import Boxes, Instances

from helpers import DEVICES, captured_logs
from soft_teacher.diagnostics import (
    ClassShareWatch,
    LabeledSetStatistics,
    PseudoLabelDiagnostics,
    pseudo_label_counts,
    stats_from_counts,
    true_positive_mask,
)
from soft_teacher.modeling import PseudoLabelRecord

IMAGE_SIZE = (128, 128)
NUM_CLASSES = 3


def stats_from_counts_of(counts):
    return stats_from_counts(counts, NUM_CLASSES)


@pytest.mark.parametrize("device", DEVICES)
def test_precision_matching_is_one_to_one_by_score_and_needs_the_same_class(device):
    pseudo = Instances(IMAGE_SIZE)
    pseudo.gt_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [50.0, 50, 60, 60], [0.0, 0, 10, 10]]))
    pseudo.gt_classes = torch.tensor([0, 0, 1, 2])
    pseudo.scores = torch.tensor([0.6, 0.9, 0.95, 0.99])
    annotations = Instances(IMAGE_SIZE, gt_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10], [50.0, 50, 70, 70]])))
    annotations.gt_classes = torch.tensor([0, 1])
    # the class-0 annotation goes to the 0.9 box (IoU 0.82) first, leaving the 0.6 duplicate unmatched;
    # the class-1 box has IoU 0.25 (< 0.5); the class-2 box overlaps exactly but has the wrong class
    matched = true_positive_mask(pseudo.to(device), annotations.to(device))
    assert matched.device.type == device and matched.tolist() == [False, True, False, False]


def scored_boxes(boxes, classes, scores, uncertainty=None):
    instances = Instances(IMAGE_SIZE, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)))
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    instances.scores = torch.tensor(scores, dtype=torch.float32)
    instances.uncertainty = torch.tensor(uncertainty or [0.05] * len(scores), dtype=torch.float32)
    return instances


def batch_counts(pseudo_per_image, annotations_per_image=None, cls_thresh=0.0, initial_thresh=0.0):
    """Counts of a batch whose candidates and loss sets are all ``pseudo_per_image``."""
    sets = pseudo_per_image
    return pseudo_label_counts(sets, sets, sets, sets, cls_thresh, NUM_CLASSES, annotations_per_image, initial_thresh)


def test_stats_of_two_ranks_summed_counts_are_those_of_their_pooled_images_not_the_mean_of_ratios():
    box, far = [0.0, 0, 10, 10], [50.0, 50, 60, 60]
    rank0 = [scored_boxes([box, far, far], [0, 0, 0], [0.9, 0.8, 0.7])]  # 1 of 3 correct
    rank1 = [scored_boxes([box], [0], [0.6]), scored_boxes([], [], [])]  # 1 of 1 correct, 2 images
    annotations0 = [scored_boxes([box], [0], [1.0])]
    annotations1 = [scored_boxes([box], [0], [1.0]), scored_boxes([far, box], [1, 1], [1.0, 1.0])]

    stats = stats_from_counts_of(batch_counts(rank0, annotations0) + batch_counts(rank1, annotations1))

    assert stats["pseudo/boxes_per_image_cls"] == pytest.approx(4 / 3)  # 4 boxes over 3 images
    assert stats["pseudo/teacher_score_mean"] == pytest.approx(3.0 / 4)
    assert stats["pseudo/precision"] == pytest.approx(2 / 4)  # the mean of ratios would be (1/3 + 1) / 2
    assert stats["pseudo/recall"] == pytest.approx(2 / 4)


def test_wrong_class_share_counts_classification_boxes_on_an_object_of_another_class():
    box, other, far = [0.0, 0, 10, 10], [30.0, 30, 40, 40], [50.0, 50, 60, 60]
    # right; on the class-1 object but named 0; on nothing; named 2 on the class-1 object but below 0.8
    candidates = [scored_boxes([box, other, far, other], [0, 0, 0, 2], [0.95, 0.9, 0.85, 0.6])]
    annotations = [scored_boxes([box, other], [0, 1], [1.0, 1.0])]

    stats = stats_from_counts_of(batch_counts(candidates, annotations, cls_thresh=0.8))

    assert stats["pseudo/precision"] == pytest.approx(1 / 3)
    assert stats["pseudo/wrong_class_share"] == pytest.approx(1 / 3)


def test_precision_and_recall_are_left_out_unless_every_summed_batch_had_annotations():
    box = [0.0, 0, 10, 10]
    annotated = batch_counts([scored_boxes([box], [0], [0.9])], [scored_boxes([box], [0], [1.0])])
    plain = batch_counts([scored_boxes([box], [0], [0.9])])

    assert "pseudo/precision" in stats_from_counts_of(annotated)
    assert not {"pseudo/precision", "pseudo/recall", "pseudo/wrong_class_share"} & set(
        stats_from_counts_of(annotated + plain))


def test_teacher_score_mean_is_zero_and_counts_finite_when_no_rank_has_a_candidate():
    empty = batch_counts([scored_boxes([], [], [])])
    stats = stats_from_counts_of(empty + empty)
    assert stats["pseudo/teacher_score_mean"] == 0.0
    assert stats["pseudo/boxes_per_image_rpn"] == 0.0


def test_precision_and_recall_at_each_grid_threshold_count_the_candidates_above_it():
    box, far = [0.0, 0, 10, 10], [50.0, 50, 60, 60]
    # the 0.95 box is right, the 0.75 box is a duplicate of it, the 0.55 box is right: 2 annotations
    candidates = [scored_boxes([box, box, far], [0, 0, 0], [0.95, 0.75, 0.55])]
    annotations = [scored_boxes([box, far], [0, 0], [1.0, 1.0])]

    stats = stats_from_counts_of(batch_counts(candidates, annotations, cls_thresh=0.9))

    assert stats["pseudo/precision_at_0.9"] == stats["pseudo/precision"] == 1.0
    assert stats["pseudo/recall_at_0.9"] == pytest.approx(1 / 2)
    assert stats["pseudo/precision_at_0.7"] == pytest.approx(1 / 2)  # the duplicate is a false positive
    assert stats["pseudo/precision_at_0.5"] == pytest.approx(2 / 3)
    assert stats["pseudo/recall_at_0.5"] == 1.0


def test_uncertainty_percentiles_are_read_off_the_summed_histogram():
    box = [0.0, 0, 10, 10]
    uncertainties = [0.0105, 0.0205, 0.0305, 0.0405, 0.0505, 0.0605, 0.0705, 0.0805, 0.0905, 0.5]
    rank0 = [scored_boxes([box] * 5, [0] * 5, [0.9] * 5, uncertainties[:5])]
    rank1 = [scored_boxes([box] * 5, [0] * 5, [0.9] * 5, uncertainties[5:])]

    stats = stats_from_counts_of(batch_counts(rank0) + batch_counts(rank1))

    assert stats["pseudo/uncertainty_p10"] == pytest.approx(0.012)  # the top of the first value's 2e-3 bin
    assert stats["pseudo/uncertainty_p50"] == pytest.approx(0.052)
    assert stats["pseudo/uncertainty_p90"] == pytest.approx(0.092)


def test_uncertainty_percentiles_are_left_out_without_candidates():
    assert "pseudo/uncertainty_p50" not in stats_from_counts_of(batch_counts([scored_boxes([], [], [])]))


def test_grid_thresholds_below_the_candidates_threshold_are_left_out_across_ranks():
    box = [0.0, 0, 10, 10]
    rank = batch_counts([scored_boxes([box], [0], [0.95])], [scored_boxes([box], [0], [1.0])], initial_thresh=0.7)
    stats = stats_from_counts_of(rank + rank)
    assert "pseudo/precision_at_0.6" not in stats and "pseudo/recall_at_0.6" not in stats
    assert stats["pseudo/precision_at_0.7"] == 1.0


def test_uncertainty_percentiles_stop_at_the_histogram_top():
    box = [0.0, 0, 10, 10]
    stats = stats_from_counts_of(batch_counts([scored_boxes([box], [0], [0.9], [5.0])]))
    assert 0.298 <= stats["pseudo/uncertainty_p50"] <= 0.3  # inside the last bin, not 5.0


def test_classification_boxes_are_counted_per_class_and_summed_over_ranks():
    box = [0.0, 0, 10, 10]
    rank0 = batch_counts([scored_boxes([box, box], [0, 2], [0.9, 0.9])])
    rank1 = batch_counts([scored_boxes([box], [2], [0.9]), scored_boxes([], [], [])])
    assert (rank0 + rank1)[-NUM_CLASSES:].tolist() == [1.0, 0.0, 2.0]


def test_labeled_set_statistics_count_non_crowd_boxes_per_class():
    dicts = [{"annotations": [{"category_id": 0}, {"category_id": 2}, {"category_id": 2, "iscrowd": 1}]},
             {"annotations": [{"category_id": 2}]}, {}]
    labeled = LabeledSetStatistics.of(dicts, NUM_CLASSES)
    assert labeled.class_counts == [1, 0, 2]
    assert labeled.boxes_per_image == pytest.approx(1.0)  # 3 boxes on 3 images
    assert labeled.class_shares == pytest.approx([1 / 3, 0.0, 2 / 3])


def watch(window=4, ratio=2.0, class_counts=(10, 10, 20)):
    return ClassShareWatch(LabeledSetStatistics(10, class_counts), window, ratio, ["circle", "square", "star"])


def test_class_share_distance_and_max_ratio_pool_the_window():
    share_watch = watch(window=2)
    share_watch.update([20, 0, 0])  # pushed out of the window by the next two
    share_watch.update([10, 0, 10])
    stats = share_watch.update([0, 10, 10])  # pooled 10 / 10 / 20: the labeled shares
    assert stats["pseudo/class_share_distance"] == pytest.approx(0.0)
    assert stats["pseudo/class_share_max_ratio"] == pytest.approx(1.0)
    stats = share_watch.update([40, 0, 0])  # pooled 40 / 10 / 10 against 1/4, 1/4, 1/2
    assert stats["pseudo/class_share_distance"] == pytest.approx((5 / 12 + 1 / 12 + 4 / 12) / 2)
    assert stats["pseudo/class_share_max_ratio"] == pytest.approx((4 / 6) / (1 / 4))


def test_class_share_statistics_are_left_out_without_pseudo_boxes():
    assert watch().update([0, 0, 0]) == {}


def test_a_class_below_its_expected_count_is_not_judged():
    share_watch = watch(window=1)
    stats = share_watch.update([4, 0, 0])  # 4 boxes: 1 expected circle, 2 expected stars, below 10
    assert "pseudo/class_share_max_ratio" not in stats
    assert stats["pseudo/class_share_distance"] == pytest.approx(0.75)


def test_class_share_warning_names_the_class_once_a_full_window_passes_the_ratio_then_each_window():
    share_watch = watch(window=3)
    with captured_logs("soft_teacher.diagnostics", level=logging.WARNING) as records:
        for step in range(1, 10):
            share_watch.update([30, 5, 5])  # circles: 75% of the pseudo boxes, 3x their labeled 25%
            if step == 2:
                assert not records  # the window is not full yet
        warnings = [r.getMessage() for r in records]
    assert len(warnings) == 3  # at updates 3, 6 and 9
    assert "'circle'" in warnings[0] and "3.0x" in warnings[0] and "75%" in warnings[0]
    assert "SOFT_TEACHER.CLASS_SHARE_WARN_RATIO" in warnings[0]


def test_class_share_warning_stays_quiet_at_the_ratio_and_when_disabled():
    with captured_logs("soft_teacher.diagnostics", level=logging.WARNING) as records:
        at_ratio = watch(window=2)
        disabled = watch(window=0)
        for _ in range(4):
            at_ratio.update([20, 10, 10])  # circles at 50%, exactly 2x their labeled 25%
            disabled.update([40, 0, 0])
    assert not records


def record_of(candidates, hidden=None, matrices=None):
    """A record whose loss sets are the candidates themselves."""
    matrices = matrices or [torch.eye(3)] * len(candidates)
    return PseudoLabelRecord(candidates=candidates, rpn=candidates, cls=candidates, reg=candidates,
                             teacher_matrices=matrices, hidden_instances=hidden)


def test_diagnostics_of_a_record_move_the_hidden_annotations_into_the_teacher_view():
    candidates = [scored_boxes([[10.0, 10, 30, 30], [60.0, 60, 70, 70]], [1, 2], [0.95, 0.9])]
    hidden = [scored_boxes([[20.0, 20, 60, 60]], [1], [1.0])]  # the first box, in the original (2x) frame
    half = torch.diag(torch.tensor([0.5, 0.5, 1.0]))
    labeled = LabeledSetStatistics(2, [2, 1, 1])
    diagnostics = PseudoLabelDiagnostics(0.9, 0.5, NUM_CLASSES, labeled, ["a", "b", "c"], 10, 2.0)
    stats = diagnostics(record_of(candidates, hidden, [half]))
    assert stats["pseudo/precision"] == pytest.approx(0.5) and stats["pseudo/recall"] == 1.0
    assert stats["pseudo/boxes_per_image_cls"] == 2.0
    assert stats["pseudo/boxes_per_image_labeled"] == 2.0  # 4 boxes on 2 images
    assert stats["pseudo/class_share_distance"] == pytest.approx(0.5)  # 0 / 1/2 / 1/2 against 1/2 / 1/4 / 1/4


def test_diagnostics_without_labeled_statistics_leave_the_comparisons_out():
    diagnostics = PseudoLabelDiagnostics(0.9, 0.5, NUM_CLASSES, None, (), 10, 2.0)
    stats = diagnostics(record_of([scored_boxes([[0.0, 0, 10, 10]], [0], [0.95])]))
    assert stats["pseudo/boxes_per_image_cls"] == 1.0
    assert not {"pseudo/boxes_per_image_labeled", "pseudo/class_share_distance"} & set(stats)


def test_labeled_statistics_of_another_class_count_are_refused():
    with pytest.raises(ValueError, match="MODEL.ROI_HEADS.NUM_CLASSES"):
        PseudoLabelDiagnostics(0.9, 0.5, NUM_CLASSES, LabeledSetStatistics(1, [1, 1]), (), 10, 2.0)


def test_non_finite_pseudo_boxes_stop_with_what_to_do_naming_the_rank():
    diagnostics = PseudoLabelDiagnostics(0.9, 0.5, NUM_CLASSES, None, (), 10, 2.0)
    with pytest.raises(FloatingPointError, match=r"SOLVER.BASE_LR.*\(rank 0\)"):
        diagnostics(record_of([scored_boxes([[0.0, 0, float("nan"), 10]], [0], [0.95])]))


def fake_peer(monkeypatch, peer_flag):
    """A world of 2 where this process is rank 0 and rank 1's failure flag is ``peer_flag`` (0 fine, 1 non-finite
    boxes, 2 another error): the all_reduce adds it to the flags' second slot."""
    monkeypatch.setattr("soft_teacher.diagnostics.comm.get_world_size", lambda: 2)
    monkeypatch.setattr("soft_teacher.diagnostics.comm.get_rank", lambda: 0)

    def all_reduce(tensor):
        tensor[-1] += peer_flag

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)


def test_a_peer_with_non_finite_boxes_stops_this_rank_naming_the_peer(monkeypatch):
    fake_peer(monkeypatch, 1.0)
    diagnostics = PseudoLabelDiagnostics(0.9, 0.5, NUM_CLASSES, None, (), 10, 2.0)
    with pytest.raises(FloatingPointError, match=r"SOLVER.BASE_LR.*\(rank 1\)$"):
        diagnostics(record_of([scored_boxes([[0.0, 0, 10, 10]], [0], [0.95])]))


def test_a_peer_that_failed_otherwise_stops_this_rank_pointing_to_its_log(monkeypatch):
    fake_peer(monkeypatch, 2.0)
    diagnostics = PseudoLabelDiagnostics(0.9, 0.5, NUM_CLASSES, None, (), 10, 2.0)
    with pytest.raises(RuntimeError, match=r"^Counting the pseudo labels failed on rank 1, whose log has the error"):
        diagnostics(record_of([scored_boxes([[0.0, 0, 10, 10]], [0], [0.95])]))


def test_non_finite_boxes_here_and_another_failure_on_a_peer_are_named_apart(monkeypatch):
    fake_peer(monkeypatch, 2.0)
    diagnostics = PseudoLabelDiagnostics(0.9, 0.5, NUM_CLASSES, None, (), 10, 2.0)
    with pytest.raises(FloatingPointError, match=r"\(rank 0\); counting the pseudo labels failed on rank 1"):
        diagnostics(record_of([scored_boxes([[0.0, 0, float("nan"), 10]], [0], [0.95])]))
