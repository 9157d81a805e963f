"""tools/measure_pseudo_labels.py: the offline measurement of a checkpoint's pseudo labels (the figures, the image
sample, whether the student view keeps each class, the tables) and its command line."""
import json

import cv2
import numpy as np
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import BoxMode, Boxes, Instances

from helpers import make_tiny_cfg, run_tool, tiny_semisup_cfg, write_config
from measure_pseudo_labels import (MEASURE_SCORE_GRID, class_under_ops, format_class_under_ops, measure_pseudo_labels,
                                   pseudo_label_figures, sample_dataset_dicts)
from soft_teacher.engine import load_config, load_detector

LOWER_THRESHOLDS = ["SOFT_TEACHER.INITIAL_SCORE_THRESH", "0.0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


def instances(boxes, classes, scores=None, uncertainty=None):
    result = Instances((40, 40), gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                       gt_classes=torch.tensor(classes, dtype=torch.int64))
    if scores is not None:
        result.scores = torch.tensor(scores)
        result.uncertainty = torch.tensor(uncertainty)
    return result


def test_figures_of_hand_built_boxes():
    annotations = [instances([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]), instances([[5, 5, 15, 15]], [2])]
    candidates = [
        instances(
            [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 35], [20, 20, 30, 30]],
            [0, 0, 1, 0],  # exact; its duplicate (a false positive, IoU 1); IoU 2/3; the wrong class (IoU 0)
            scores=[0.97, 0.85, 0.65, 0.55],
            uncertainty=[0.01, 0.035, 0.045, 0.1],
        ),
        instances([], [], scores=[], uncertainty=[]),
    ]
    figures = pseudo_label_figures(candidates, annotations, initial_score_thresh=0.5)
    assert (figures["images"], figures["annotations"], figures["candidates"]) == (2, 3, 4)
    rows = {row["threshold"]: row for row in figures["score_thresholds"]}
    assert list(rows) == list(MEASURE_SCORE_GRID)
    expected = {0.5: (4, 2), 0.6: (3, 2), 0.7: (2, 1), 0.8: (2, 1), 0.9: (1, 1), 0.95: (1, 1)}
    for t, (boxes, true_positives) in expected.items():
        assert (rows[t]["boxes"], rows[t]["true_positives"]) == (boxes, true_positives), t
        assert rows[t]["boxes_per_image"] == boxes / 2
        assert rows[t]["precision"] == pytest.approx(true_positives / boxes)
        assert rows[t]["recall"] == pytest.approx(true_positives / 3)

    by_uncertainty = {row["threshold"]: row for row in figures["uncertainty_thresholds"]}
    assert [row["candidates"] for row in by_uncertainty.values()] == [1, 1, 2, 3, 4]
    assert by_uncertainty[0.04]["mean_iou"] == pytest.approx(1.0)
    assert by_uncertainty[0.05]["mean_iou"] == pytest.approx((2 + 2 / 3) / 3)
    assert by_uncertainty[0.05]["well_localised_share"] == pytest.approx(2 / 3)
    assert by_uncertainty[None]["mean_iou"] == pytest.approx((2 + 2 / 3) / 4)
    assert by_uncertainty[None]["well_localised_share"] == pytest.approx(1 / 2)
    values = [0.01, 0.035, 0.045, 0.1]
    expected_percentiles = {f"p{p}": np.percentile(values, p) for p in (10, 25, 50, 75, 90)}
    assert figures["uncertainty_percentiles"] == pytest.approx(expected_percentiles)

    above_07 = pseudo_label_figures(candidates, annotations, initial_score_thresh=0.7)
    assert [row["threshold"] for row in above_07["score_thresholds"]] == [0.7, 0.8, 0.9, 0.95]


def test_false_pseudo_boxes_are_split_by_cause_and_wrong_classes_counted_by_pair():
    annotations = [instances([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])]
    candidates = [instances(
        [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [20, 20, 30, 45], [35, 35, 39, 39]],
        [0, 0, 0, 1, 1],  # true; duplicate; class 1 named 0 (IoU 1); class 1 at IoU 0.4; on nothing
        scores=[0.97, 0.92, 0.85, 0.75, 0.65],
        uncertainty=[0.03] * 5,
    )]
    figures = pseudo_label_figures(candidates, annotations, initial_score_thresh=0.5, cls_thresh=0.8)
    rows = {row["threshold"]: row["false_positives"] for row in figures["score_thresholds"]}
    assert rows[0.5] == {"duplicate": 1, "wrong_class": 1, "mislocated": 1, "background": 1}
    assert rows[0.8] == {"duplicate": 1, "wrong_class": 1, "mislocated": 0, "background": 0}
    assert rows[0.95] == {"duplicate": 0, "wrong_class": 0, "mislocated": 0, "background": 0}
    assert figures["confusion_thresh"] == 0.8
    assert figures["confusions"] == [{"annotated_class": 1, "pseudo_class": 0, "boxes": 1}]
    above_09 = pseudo_label_figures(candidates, annotations, initial_score_thresh=0.5, cls_thresh=0.9)
    assert above_09["confusions"] == []


def test_false_pseudo_boxes_on_an_image_without_annotations_are_background():
    figures = pseudo_label_figures([instances([[0, 0, 5, 5]], [0], scores=[0.9], uncertainty=[0.03])],
                                   [instances([], [])])
    assert figures["score_thresholds"][0]["false_positives"]["background"] == 1


def test_figures_without_candidates_leave_ratios_undefined():
    figures = pseudo_label_figures([instances([], [], scores=[], uncertainty=[])], [instances([[0, 0, 5, 5]], [0])])
    assert all(row["precision"] is None and row["recall"] == 0 for row in figures["score_thresholds"])
    assert all(row["mean_iou"] is None for row in figures["uncertainty_thresholds"])
    assert figures["uncertainty_percentiles"]["p50"] is None


# The teacher's detections (teacher view, twice the original size): box, class, score.
KNOWN = [([8, 16, 40, 48], 1, 0.97), ([72, 16, 120, 48], 2, 0.92), ([8, 16, 40, 48], 1, 0.6)]
# The annotations, original frame: the first box, and the second one's place with another class.
HIDDEN = [([4, 8, 20, 24], 1), ([36, 8, 60, 24], 0)]


def known_detections(self, images, features, proposals, targets=None):
    detections = []
    for image_size in images.image_sizes:
        detections.append(Instances(image_size, pred_boxes=Boxes(torch.tensor([b for b, _, _ in KNOWN]).float()),
                                    pred_classes=torch.tensor([c for _, c, _ in KNOWN]),
                                    scores=torch.tensor([s for _, _, s in KNOWN])))
    return detections, {}


def doubling_mapper(dataset_dict):
    """Teacher view: the 64 px original at 128 px; the annotations in the original frame."""
    if dataset_dict["file_name"] == "unreadable.png":
        return None
    return {"teacher": {"image": torch.full((3, 128, 128), 128, dtype=torch.uint8),
                        "transform_matrix": torch.diag(torch.tensor([2.0, 2.0, 1.0]))},
            "hidden_instances": instances([b for b, _ in HIDDEN], [c for _, c in HIDDEN])}


def test_measuring_a_detector_moves_the_annotations_into_the_teacher_view(monkeypatch):
    monkeypatch.setattr(StandardROIHeads, "forward", known_detections)
    cfg = make_tiny_cfg()
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    torch.manual_seed(0)
    detector = build_model(cfg).eval()
    dicts = [{"file_name": name, "annotations": []} for name in ("a.png", "unreadable.png", "b.png")]
    figures = measure_pseudo_labels(detector, doubling_mapper, dicts, score_thresh=0.5, jitter_times=2,
                                    jitter_scale=0.06)
    assert (figures["images"], figures["skipped_images"], figures["annotations"]) == (2, 1, 4)
    rows = {row["threshold"]: row for row in figures["score_thresholds"]}
    assert (rows[0.5]["boxes"], rows[0.5]["true_positives"]) == (6, 2)  # the duplicate and the wrong class miss
    assert (rows[0.9]["precision"], rows[0.9]["recall"]) == (0.5, 0.5)
    assert (rows[0.95]["precision"], rows[0.95]["recall"]) == (1.0, 0.5)
    with pytest.raises(ValueError, match="no hidden annotations to measure against"):
        measure_pseudo_labels(detector, doubling_mapper, [{"file_name": "c.png"}], 0.5, 2, 0.06)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Config file (the default thresholds), a Soft Teacher checkpoint and the teacher's weights.

    The teacher's class 0 is made confident, the student's hopeless: only the teacher gives pseudo boxes
    above 0.5, so figures at those thresholds show that the tool measured the teacher.
    """
    root = tmp_path_factory.mktemp("measure")
    cfg = tiny_semisup_cfg(root, name="measure_pl")
    cfg.SOFT_TEACHER.INITIAL_SCORE_THRESH = 0.5
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
    config_file = write_config(cfg, root / "tiny.yaml")
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.teacher.roi_heads.box_predictor.cls_score.bias[0] += 3.0
        model.student.roi_heads.box_predictor.cls_score.bias[0] -= 30.0
    DetectionCheckpointer(model, save_dir=str(root)).save("tiny")
    teacher_state = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    return config_file, str(root / "tiny.pth"), teacher_state, str(root / "unlabeled")


def test_a_soft_teacher_checkpoint_loads_its_teacher(tiny_run):
    config_file, checkpoint, teacher_state, _ = tiny_run
    detector = load_detector(load_config(config_file), checkpoint)
    assert type(detector).__name__ == "GeneralizedRCNN" and not detector.training
    assert all(torch.equal(value, teacher_state[key]) for key, value in detector.state_dict().items())


def test_command_line_measures_the_unlabeled_split(tiny_run, tmp_path):
    config_file, checkpoint, _, _ = tiny_run
    output = tmp_path / "figures" / "quality.json"
    argv = ["--config-file", config_file, "--checkpoint", checkpoint, "--dataset", "measure_pl_unlabeled",
            "--num", "3", "--output", str(output), *LOWER_THRESHOLDS, "SOFT_TEACHER.CLS_PSEUDO_THRESH", "0.65"]
    completed = run_tool("measure_pseudo_labels", argv)
    assert completed.returncode == 0, completed.stdout[-3000:]
    figures = json.loads(output.read_text())
    assert figures["images"] == 3 and figures["annotations"] > 0 and figures["initial_score_thresh"] == 0.0
    rows = figures["score_thresholds"]
    assert [row["threshold"] for row in rows] == list(MEASURE_SCORE_GRID)
    assert rows[0]["boxes"] > 0  # the confident teacher, not the student
    for row in rows:
        assert row["precision"] is None or 0.0 <= row["precision"] <= 1.0
        assert 0.0 <= row["recall"] <= 1.0
    recalls = [row["recall"] for row in rows]
    assert recalls == sorted(recalls, reverse=True)
    assert [row["threshold"] for row in figures["uncertainty_thresholds"]] == [0.02, 0.03, 0.04, 0.05, None]
    assert figures["uncertainty_thresholds"][-1]["candidates"] == figures["candidates"] > 0
    for row in rows:  # every box is true or has one cause
        assert row["true_positives"] + sum(row["false_positives"].values()) == row["boxes"]
    printed = completed.stdout
    assert "precision" in printed and "uncertainty percentiles" in printed and "     0.95" in printed
    assert figures["confusion_thresh"] == 0.65  # the config's classification threshold
    assert "wrong-class pseudo boxes at score >= 0.65" in printed
    under_ops = figures["class_under_ops"]
    assert list(under_ops["counts"]) == ["none", "translate_x", "translate_y", "rotate", "shear"]
    num_classes = len(under_ops["classes"])
    objects = np.array(under_ops["counts"]["none"]).sum()
    assert objects > 0 and np.array(under_ops["counts"]["none"]).shape == (num_classes, num_classes + 1)
    assert "after each geometric op of the student view" in printed and "\nshear " in printed


def test_an_op_that_changes_what_the_classifier_sees_is_reported_per_class(tmp_path):
    """A 50 px image with a bright 10 px square, measured at 100 px: a classifier that names a box 0 when it
    sits on a bright square of the unwarped size (area 400 after the resize) and 1 otherwise sees class 0
    only if the boxes are resized and moved with the image; translation keeps it, shear (the box around the
    sheared corners grows, and the square turns into a parallelogram) does not."""
    image = np.zeros((50, 50, 3), np.uint8)
    image[20:30, 20:30] = 255
    cv2.imwrite(str(tmp_path / "a.png"), image)
    dicts = [{"file_name": str(tmp_path / "a.png"), "annotations": [
        {"bbox": [20, 20, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}]}] * 20
    cfg = make_tiny_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 100, 100

    def bright_square(view, boxes):
        names = []
        for x0, y0, x1, y1 in boxes.round().astype(int):
            inside = view[y0:y1, x0:x1]
            area_kept = abs((x1 - x0) * (y1 - y0) - 400) < 40
            names.append(0 if area_kept and inside.size and inside.mean() > 200 else 1)
        return np.array(names)

    np.random.seed(0)
    counts = class_under_ops(bright_square, cfg, dicts, num_classes=2, ops=("translate_x", "shear"))
    assert counts["none"].tolist() == [[20, 0, 0], [0, 0, 0]]
    assert counts["translate_x"].tolist() == [[20, 0, 0], [0, 0, 0]]
    assert counts["shear"][0, 1] > 10 and counts["shear"][0].sum() == 20
    table = format_class_under_ops(counts, ["square", "other"], used_ops=("translate_x",))
    assert "shear (unused)" in table and "other" in table.splitlines()[-1]


def test_an_object_of_a_class_the_model_lacks_is_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((50, 50, 3), np.uint8))
    dicts = [{"file_name": str(tmp_path / "a.png"), "annotations": [
        {"bbox": [20, 20, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 3}]}]
    with pytest.raises(ValueError, match="object of class 3, but the model has 2 classes"):
        class_under_ops(lambda view, boxes: np.zeros(len(boxes), int), make_tiny_cfg(), dicts, num_classes=2)


def test_a_one_class_table_names_no_other_class():
    table = format_class_under_ops({"none": np.array([[3, 1]])}, ["square"], used_ops=())
    assert table.splitlines()[-1].split() == ["none", "square", "4", "0.75", "0.25", "-"]


def test_the_sample_is_seeded_and_without_replacement(tiny_run):
    config_file, *_ = tiny_run
    load_config(config_file)  # registers the config's datasets
    first = sample_dataset_dicts("measure_pl_unlabeled", 3, seed=5)
    assert [d["image_id"] for d in first] == [d["image_id"] for d in sample_dataset_dicts(
        "measure_pl_unlabeled", 3, seed=5)]
    assert len({d["image_id"] for d in first}) == 3
    assert len(sample_dataset_dicts("measure_pl_unlabeled", 150, seed=0)) == 4


def test_a_dataset_without_annotations_is_refused(tiny_run):
    config_file, _, _, unlabeled_folder = tiny_run
    load_config(config_file, ["DATASETS.CUSTOM_UNLABELED_FOLDERS", f"(('measure_pl_folder', '{unlabeled_folder}'),)"])
    with pytest.raises(ValueError, match="'measure_pl_folder' has no hidden annotations to measure against"):
        sample_dataset_dicts("measure_pl_folder", 150, seed=0)


@pytest.mark.parametrize("problem", ["checkpoint", "config", "dataset"])
def test_missing_inputs_raise_the_errors_the_tool_reports(problem, tiny_run, tmp_path):
    """The tool prints these (FileNotFoundError, or ValueError such as ConfigError) as one line, exit code 2."""
    config_file, checkpoint, _, _ = tiny_run
    expected = {"checkpoint": "nope.pth not found", "config": "nope.yaml", "dataset": "not a registered"}[problem]
    with pytest.raises((FileNotFoundError, ValueError), match=expected):
        cfg = load_config(str(tmp_path / "nope.yaml") if problem == "config" else config_file)
        sample_dataset_dicts("no_such_dataset" if problem == "dataset" else "measure_pl_unlabeled", 150, seed=0)
        load_detector(cfg, str(tmp_path / "nope.pth"))
