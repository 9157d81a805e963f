"""Box AP with the classes merged (tools/class_agnostic_ap.py)."""
import json

import pytest

from helpers import run_tool, tiny_semisup_cfg, write_config
from class_agnostic_ap import box_ap, class_aware_and_agnostic_ap, merge_classes

# Two 64x64 images with one object each, COCO format (XYWH), categories 1 and 2.
GROUND_TRUTH = {
    "images": [{"id": 7, "height": 64, "width": 64}, {"id": 8, "height": 64, "width": 64}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 8, "category_id": 2, "bbox": [30, 20, 16, 24], "area": 384, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
}


def detection(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def test_merging_keeps_the_best_of_an_object_found_once_per_class_and_every_separate_detection():
    detections = [
        detection(7, 1, [10, 10, 20, 20], 0.6),
        detection(7, 2, [11, 10, 20, 20], 0.9),  # the same object, named the other class
        detection(7, 2, [40, 40, 10, 10], 0.3),  # elsewhere
        detection(8, 1, [11, 10, 20, 20], 0.5),  # another image: never suppressed by image 7's boxes
    ]
    merged = merge_classes(detections)
    assert sorted((d["image_id"], d["score"]) for d in merged) == [(7, 0.3), (7, 0.9), (8, 0.5)]
    assert {d["category_id"] for d in merged} == {1}


def test_merging_reads_the_boxes_as_xywh():
    # IoU 0.43 as XYWH (both kept); read as XYXY the two boxes would overlap at IoU 0.6 and one would go
    side_by_side = [detection(7, 1, [0, 0, 30, 30], 0.9), detection(7, 2, [12, 0, 30, 30], 0.8)]
    assert len(merge_classes(side_by_side)) == 2


def test_objects_found_with_the_wrong_classes_score_zero_class_aware_and_full_class_agnostic():
    swapped = [detection(7, 2, [10, 10, 20, 20], 0.9), detection(8, 1, [30, 20, 16, 24], 0.8)]
    figures = class_aware_and_agnostic_ap(GROUND_TRUTH, swapped)
    assert figures["class_aware"] == {"AP": 0.0, "AP50": 0.0, "AR100": 0.0}
    assert figures["class_agnostic"] == pytest.approx({"AP": 100.0, "AP50": 100.0, "AR100": 100.0})


def test_no_detections_score_zero():
    assert box_ap(GROUND_TRUTH, []) == {"AP": 0.0, "AP50": 0.0, "AR100": 0.0}


def test_detections_of_images_or_categories_outside_the_ground_truth_are_refused():
    with pytest.raises(ValueError, match="1 image ids of the detections are not in the ground truth .first: 99"):
        box_ap(GROUND_TRUTH, [detection(99, 1, [0, 0, 5, 5], 0.5)])
    with pytest.raises(ValueError, match="1 category ids of the detections are not in the ground truth .first: 0"):
        box_ap(GROUND_TRUTH, [detection(7, 0, [0, 0, 5, 5], 0.5)])


def test_tool_reports_both_figures_of_each_file_on_a_dataset_its_config_registers(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path, name="agnostic")
    config = write_config(cfg, tmp_path / "config.yaml")
    # agnostic_test (helpers.write_coco): images 100 and 101, one box [16, 16, 32, 32] each, categories 1 and 2
    predictions = tmp_path / "coco_instances_results.json"
    predictions.write_text(json.dumps([detection(100, 2, [16, 16, 32, 32], 0.9),
                                       detection(101, 1, [16, 16, 32, 32], 0.9)]))
    completed = run_tool("class_agnostic_ap", ["--config-file", config, "--dataset", "agnostic_test",
                                               "--output", str(tmp_path / "figures.json"), str(predictions)])
    assert completed.returncode == 0, completed.stdout
    figures = json.loads((tmp_path / "figures.json").read_text())["results"][str(predictions)]
    assert figures["class_aware"]["AP"] == 0.0
    assert figures["class_agnostic"]["AP"] == pytest.approx(100.0)
