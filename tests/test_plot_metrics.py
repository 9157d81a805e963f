"""tools/plot_metrics.py: curves from Detectron2 metrics.json files."""
import os

import cv2
import numpy as np
import pytest
from helpers import write_metrics
from plot_metrics import default_plot_path, load_metrics, metrics_records, plot_metrics

SOFT_TEACHER_LINES = [
    {"iteration": 19, "total_loss": 3.0, "sup_loss_cls": 1.0, "unsup_loss_cls": 0.5,
     "pseudo/boxes_per_image_rpn": 1.0, "pseudo/boxes_per_image_cls": 1.0, "pseudo/boxes_per_image_reg": 2.0,
     "pseudo/precision": 0.25, "pseudo/recall": 0.1, "pseudo/wrong_class_share": 0.5, "lr": 0.01,
     "pseudo/boxes_per_image_labeled": 4.0, "pseudo/class_share_distance": 0.2, "pseudo/class_share_max_ratio": 1.5,
     "pseudo/teacher_score_mean": 0.9},
    {"iteration": 39, "total_loss": 2.0, "sup_loss_cls": 0.8, "unsup_loss_cls": 0.4},
    {"iteration": 39, "teacher/bbox/AP": 5.0, "student/bbox/AP": 4.0},
]
BASELINE_LINES = [
    {"iteration": 19, "total_loss": 2.5, "loss_cls": 1.0},
    {"iteration": 39, "bbox/AP": 3.0},
]


def test_load_metrics_merges_lines_of_one_iteration(tmp_path):
    run = write_metrics(tmp_path / "run", SOFT_TEACHER_LINES)
    metrics = load_metrics(run)
    assert metrics["total_loss"] == ([19, 39], [3.0, 2.0])
    assert metrics["teacher/bbox/AP"] == ([39], [5.0])


def test_load_metrics_keeps_the_later_value_of_a_repeated_iteration(tmp_path):
    run = write_metrics(tmp_path / "run", [
        {"iteration": 19, "total_loss": 3.0}, {"iteration": 39, "total_loss": 2.0},
        {"iteration": 19, "total_loss": 2.9},  # resumed from iteration 0
    ])
    assert load_metrics(os.path.join(run, "metrics.json"))["total_loss"] == ([19, 39], [2.9, 2.0])


def test_metrics_records_are_the_lines_in_file_order(tmp_path):
    run = write_metrics(tmp_path / "run", SOFT_TEACHER_LINES)
    assert metrics_records(run) == SOFT_TEACHER_LINES


def test_load_metrics_names_the_line_that_is_not_json(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 1, "total_loss": 1.0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        load_metrics(str(path))


def test_missing_metrics_file_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=os.path.join(str(tmp_path), "metrics.json")):
        load_metrics(str(tmp_path))


def test_one_run_draws_every_logged_key_in_its_panel(tmp_path):
    run = write_metrics(tmp_path / "run", SOFT_TEACHER_LINES)
    output = str(tmp_path / "curves.png")
    drawn = plot_metrics([run], output)
    assert drawn == {
        "Total loss": ["total_loss"],
        "Supervised losses": ["sup_loss_cls"],
        "Unsupervised losses (weighted)": ["unsup_loss_cls"],
        "Box AP": ["student/bbox/AP", "teacher/bbox/AP"],
        "Pseudo boxes per image": [
            "pseudo/boxes_per_image_cls", "pseudo/boxes_per_image_labeled", "pseudo/boxes_per_image_reg",
            "pseudo/boxes_per_image_rpn"],
        "Pseudo-label class shares (no annotations needed)": [
            "pseudo/class_share_distance", "pseudo/class_share_max_ratio", "pseudo/teacher_score_mean"],
        "Pseudo-label quality": ["pseudo/precision", "pseudo/recall", "pseudo/wrong_class_share"],
    }
    image = cv2.imread(output)
    assert image.shape == (1200, 1800, 3)  # 3 x 3 panels of 6 x 4 inches at 100 dpi
    first_colour_bgr = np.array([0xB4, 0x77, 0x1F])  # matplotlib's C0, the first key of each panel
    assert (np.abs(image.astype(int) - first_colour_bgr).sum(axis=2) < 30).sum() > 100


def test_each_test_set_of_a_run_evaluated_on_several_gets_its_own_box_ap_line(tmp_path):
    run = write_metrics(tmp_path / "run", [{"iteration": 39, "teacher/shapes_val/bbox/AP": 5.0,
                                            "teacher/shapes_test/bbox/AP": 4.0, "shapes_test/bbox/AP": 3.0,
                                            "teacher/shapes_test/bbox/AP50": 9.0}])
    drawn = plot_metrics([run], str(tmp_path / "curves.png"))
    assert drawn["Box AP"] == ["shapes_test/bbox/AP", "teacher/shapes_test/bbox/AP", "teacher/shapes_val/bbox/AP"]


def test_several_runs_are_overlaid_with_their_labels(tmp_path):
    soft = write_metrics(tmp_path / "soft", SOFT_TEACHER_LINES)
    base = write_metrics(tmp_path / "base", BASELINE_LINES)
    drawn = plot_metrics([soft, base], str(tmp_path / "cmp.png"), labels=["ST", "sup"])
    assert drawn["Box AP"] == ["ST: student/bbox/AP", "ST: teacher/bbox/AP", "sup: bbox/AP"]
    assert drawn["Supervised losses"] == ["ST: sup_loss_cls", "sup: loss_cls"]
    assert drawn["Total loss"] == ["ST: total_loss", "sup: total_loss"]


def test_a_panel_without_data_is_reported_empty(tmp_path):
    base = write_metrics(tmp_path / "base", BASELINE_LINES)
    drawn = plot_metrics([base], str(tmp_path / "base.png"))
    assert drawn["Unsupervised losses (weighted)"] == []
    assert drawn["Pseudo-label quality"] == []
    assert os.path.getsize(tmp_path / "base.png") > 0


def test_one_label_per_run_is_required(tmp_path):
    run = write_metrics(tmp_path / "run", BASELINE_LINES)
    with pytest.raises(ValueError, match="one label per run"):
        plot_metrics([run, run], str(tmp_path / "x.png"), labels=["only one"])


def test_the_default_picture_is_metrics_png_next_to_the_run(tmp_path):
    run = write_metrics(tmp_path / "run", SOFT_TEACHER_LINES)
    assert default_plot_path(run) == default_plot_path(os.path.join(run, "metrics.json")) == os.path.join(
        run, "metrics.png")


def test_a_missing_run_is_an_error_that_says_what_to_pass(tmp_path):  # the tool prints it, exit code 2
    with pytest.raises(FileNotFoundError, match="No metrics file at .* Pass a training output folder"):
        plot_metrics([str(tmp_path / "nowhere")], str(tmp_path / "x.png"))
