"""tools/benchmark_accuracy.py and tools/benchmark_speed.py: their arithmetic, and a tiny CPU run of each.

The real runs need a GPU; the CPU runs here check that the scripts train, read back and
report what they should, so that a GPU session spends its time measuring, not debugging.
"""
import json
import os

import pytest

from commands import load_tool
from engine_helpers import write_metrics

benchmark_accuracy = load_tool("benchmark_accuracy")
benchmark_speed = load_tool("benchmark_speed")


def test_gap_closed_is_the_share_of_the_supervised_to_ceiling_gap():
    assert benchmark_accuracy.gap_closed(ap_soft=40.0, ap_sup=30.0, ap_full=50.0) == pytest.approx(0.5)
    assert benchmark_accuracy.gap_closed(ap_soft=25.0, ap_sup=30.0, ap_full=50.0) == pytest.approx(-0.25)


def test_gap_closed_is_undefined_without_a_positive_gap_or_a_figure():
    assert benchmark_accuracy.gap_closed(ap_soft=40.0, ap_sup=50.0, ap_full=50.0) is None
    assert benchmark_accuracy.gap_closed(ap_soft=None, ap_sup=30.0, ap_full=50.0) is None


def test_final_box_ap_reads_the_evaluation_after_the_last_iteration_not_a_periodic_one(tmp_path):
    out = str(tmp_path / "run")
    write_metrics(out, [
        {"iteration": 999, "teacher/bbox/AP": 10.0, "student/bbox/AP": 9.0},
        {"iteration": 2999, "total_loss": 1.0},
        {"iteration": 3000, "teacher/bbox/AP": 41.0, "student/bbox/AP": 40.0},
    ])
    assert benchmark_accuracy.final_box_ap(out, max_iter=3000) == {"teacher": 41.0, "student": 40.0}
    assert benchmark_accuracy.last_iteration(out) == 3000


def test_final_box_ap_is_none_while_a_run_has_only_periodic_evaluations(tmp_path):
    out = str(tmp_path / "run")
    write_metrics(out, [{"iteration": 999, "bbox/AP": 10.0}, {"iteration": 1500, "total_loss": 1.0}])
    assert benchmark_accuracy.final_box_ap(out, max_iter=3000) is None


def test_accuracy_table_marks_what_was_not_measured():
    results = {
        "runs": {
            "supervised_10pct": {"box_ap": {"model": 30.0}, "max_iter": 3000},
            "supervised_100pct": {"box_ap": {"model": 50.0}, "max_iter": 3000},
            "soft_teacher_10pct": {"box_ap": None, "max_iter": 3000, "state": "not started (--stop-after)"},
        },
        "gap_closed": {f"{p}pct": {"teacher": None, "student": None} for p in (1, 5, 10)},
        "machine": {"card": "CPU", "gpus": 0, "cpu_cores": 2, "torch": "t", "detectron2": "d", "python": "p",
                    "date_utc": "now"},
        "opts": [],
    }
    text = benchmark_accuracy.markdown(results, "python tools/benchmark_accuracy.py")
    row = next(line for line in text.splitlines() if line.startswith("| 10% "))
    assert row == "| 10% | 30.0 | not measured | not measured | 50.0 | n/a | n/a |"
    assert "Not finished: soft_teacher_10pct: not started (--stop-after)." in text


@pytest.mark.slow
def test_accuracy_benchmark_trains_a_supervised_and_a_soft_teacher_run_on_the_cpu_and_reports(tmp_path):
    output = str(tmp_path / "accuracy")
    status = benchmark_accuracy.main([
        "--output", output, "--parallel", "2", "--runs", "supervised_1pct,soft_teacher_1pct",
        "MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "False", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()", "SOFT_TEACHER.BURN_IN_ITERS", "2",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "TEST.EVAL_PERIOD", "0",
        "DATASETS.TEST", "('shapes_train_1pct_1',)",  # 30 images: a quick evaluation
    ])
    assert status == 0
    with open(os.path.join(output, "results.json")) as f:
        runs = json.load(f)["runs"]
    assert set(runs["supervised_1pct"]["box_ap"]) == {"model"}
    assert set(runs["soft_teacher_1pct"]["box_ap"]) == {"teacher", "student"}
    assert runs["soft_teacher_1pct"]["state"] == "trained"


@pytest.mark.slow
def test_speed_benchmark_times_both_iterations_on_the_cpu_and_reports_their_ratio(tmp_path):
    output = str(tmp_path / "speed")
    status = benchmark_speed.main([
        "--output", output, "--iters", "2", "--warmup", "1", "--amp", "off", "--num-images", "6",
        "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "DATALOADER.NUM_WORKERS", "0",
    ])
    assert status == 0
    with open(os.path.join(output, "results.json")) as f:
        results = json.load(f)
    by_method = {r["method"]: r for r in results["settings"]}
    assert by_method["soft_teacher"]["images_per_iteration"] == 5
    assert by_method["supervised"]["images_per_iteration"] == 5
    assert all(r["timed_iterations"] == 2 and r["median_ms"] > 0 for r in results["settings"])
    ratio = by_method["soft_teacher"]["median_ms"] / by_method["supervised"]["median_ms"]
    assert results["ratios"]["fp32"] == pytest.approx(ratio)
