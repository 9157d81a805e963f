"""tools/train_twin.py (and ``make demo``, which runs it on the demo config): any Soft Teacher config trained
beside its supervised twin, compared at the end."""
import json
import math
import os

import cv2
import pytest
import torch

from soft_teacher.data.datasets.shapes import generate_shapes
from soft_teacher.engine import ConfigError, load_config

import branch_runs
import train_twin
from helpers import REPO_ROOT, run_tool
from plot_metrics import metrics_records

SOFT_TEACHER_DEMO = os.path.join(REPO_ROOT, "configs", "shapes", "soft_teacher_demo.yaml")
# The demo's schedule shrunk: the Soft Teacher arm branches at B = 2 from the twin's model_0000001.pth.
TINY_SCHEDULE = ["SOLVER.MAX_ITER", "4", "SOFT_TEACHER.BURN_IN_ITERS", "2", "SOLVER.STEPS", "(3,)",
                 "SOLVER.WARMUP_ITERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.IMS_PER_BATCH_UNLABELED", "2",
                 "TEST.EVAL_PERIOD", "0"]


@pytest.fixture
def tiny_shapes(tmp_path):
    """Overrides that train on a 20 + 4 + 4 image shapes set in ``tmp_path`` (``DATASETS.CUSTOM_COCO``, so that
    the train_net.py processes see it too): 4 labeled, 16 unlabeled (annotations hidden), two test sets of 4."""
    folder = generate_shapes(str(tmp_path / "datasets"), num_train=20, num_val=4)
    with open(os.path.join(folder, "annotations", "shapes_train.json")) as f:
        train = json.load(f)
    entries = []
    for name, images in (("tiny_labeled", train["images"][:4]), ("tiny_unlabeled", train["images"][4:])):
        ids = {image["id"] for image in images}
        subset = dict(train, images=images, annotations=[a for a in train["annotations"] if a["image_id"] in ids])
        json_file = str(tmp_path / f"{name}.json")
        with open(json_file, "w") as f:
            json.dump(subset, f)
        entries.append((name, json_file, os.path.join(folder, "train")))
    for subset in ("val", "test"):
        entries.append((f"tiny_{subset}", os.path.join(folder, "annotations", f"shapes_{subset}.json"),
                        os.path.join(folder, subset)))
    return ["DATASETS.CUSTOM_COCO", repr(tuple(entries)), "DATASETS.TRAIN", "('tiny_labeled',)",
            "DATASETS.TRAIN_UNLABELED", "('tiny_unlabeled',)", "DATASETS.TEST", "('tiny_val', 'tiny_test')"]


@pytest.mark.slow
def test_the_twin_and_the_branch_train_one_after_the_other_and_are_compared_on_every_test_set(
        tiny_shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(branch_runs, "POLL_SECONDS", 0.5)
    output = str(tmp_path / "twin")
    results = train_twin.train_twin(SOFT_TEACHER_DEMO, output, [*TINY_SCHEDULE, *tiny_shapes], num_pictures=2)
    printed = "\n".join(train_twin.summary_lines(results))
    with open(os.path.join(output, "results.json")) as f:
        assert json.load(f) == json.loads(json.dumps(results))
    assert results["datasets"] == {"tiny_labeled": 4, "tiny_unlabeled": 16, "tiny_val": 4, "tiny_test": 4}
    assert set(results["box_ap"]) == {"tiny_val", "tiny_test"}
    for dataset, box_ap in results["box_ap"].items():
        assert set(box_ap) == {"teacher", "student", "supervised"}
        for figures in box_ap.values():
            assert {"AP", "AP50", "AP75", "APs", "APm"} <= set(figures)
            assert 0.0 <= figures["AP"] <= 100.0 and not math.isnan(figures["AP"])
        assert results["ap_difference"][dataset]["teacher - supervised"] == pytest.approx(
            box_ap["teacher"]["AP"] - box_ap["supervised"]["AP"], abs=0.011)
    pseudo = results["pseudo_labels"]
    assert set(pseudo) == set(train_twin.PSEUDO_KEYS)
    assert pseudo["boxes_per_image"] >= 0 and 0 <= pseudo["recall"] <= 1
    assert pseudo["labeled_boxes_per_image"] > 0  # the labeled set's reference is always there
    assert set(results["seconds"]) == {"data", "train_and_evaluate", "pseudo_labels", "curves", "total"}
    assert results["parallel"] == 1 and results["torch_threads"] == torch.get_num_threads()
    # The Soft Teacher arm branched: it resumed from a copy of the twin's model_0000001.pth, at iteration 2;
    # the twin is the config as a plain detector that saved that checkpoint.
    supervised, soft = os.path.join(output, "supervised"), os.path.join(output, "soft_teacher")
    assert os.path.isfile(os.path.join(soft, "model_0000001.pth"))
    with open(os.path.join(soft, "log.txt")) as f:
        assert "Starting training from iteration 2" in f.read()
    assert min(record["iteration"] for record in metrics_records(soft)) >= 2
    twin_cfg = load_config(os.path.join(supervised, "config.yaml"))
    assert twin_cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and twin_cfg.DATASETS.TRAIN_UNLABELED == ()
    assert twin_cfg.SOLVER.CHECKPOINT_PERIOD == 2
    assert cv2.imread(os.path.join(output, "pseudo_labels.png")) is not None
    assert cv2.imread(os.path.join(output, "training_curves.png")) is not None
    assert len(os.listdir(os.path.join(output, "pseudo_labels"))) == 2  # one picture per unlabeled image
    # One after the other: the branch copied its checkpoint after the twin had finished.
    assert os.path.getmtime(os.path.join(supervised, "model_final.pth")) <= os.path.getmtime(
        os.path.join(soft, "model_0000001.pth"))
    for line in ("tiny_val:", "tiny_test:", "teacher", "student", "supervised", "teacher - supervised",
                 "student - supervised", "precision", "recall", "the labeled images have", "another SEED",
                 os.path.join(output, "pseudo_labels.png"), os.path.join(output, "training_curves.png")):
        assert line in printed, line

    # Run again, the runs are read, not trained again.
    monkeypatch.setattr(branch_runs.Scheduler, "_start", lambda *args: pytest.fail("a finished arm was started"))
    again = train_twin.train_twin(SOFT_TEACHER_DEMO, output, [*TINY_SCHEDULE, *tiny_shapes], num_pictures=0)
    assert again["box_ap"] == results["box_ap"] and again["pseudo_labels_png"] is None


def test_the_twin_is_the_config_as_a_plain_detector_that_checkpoints_at_the_branch_point():
    supervised, soft = train_twin.plan_arms(SOFT_TEACHER_DEMO, ["SEED", "3"])
    assert (supervised.name, soft.name) == ("supervised", "soft_teacher") and soft.twin == supervised
    assert supervised.config_file == soft.config_file == SOFT_TEACHER_DEMO
    twin_cfg, soft_cfg = supervised.config(), soft.config()
    assert twin_cfg.SEED == soft_cfg.SEED == 3
    assert twin_cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and twin_cfg.DATASETS.TRAIN_UNLABELED == ()
    assert twin_cfg.SOLVER.CHECKPOINT_PERIOD == soft_cfg.SOFT_TEACHER.BURN_IN_ITERS > 0
    assert branch_runs.branch_problems([supervised, soft]) == []


def test_without_a_burn_in_both_arms_train_from_scratch():
    supervised, soft = train_twin.plan_arms(SOFT_TEACHER_DEMO, ["SOFT_TEACHER.BURN_IN_ITERS", "0"])
    assert soft.twin is None
    assert "SOLVER.CHECKPOINT_PERIOD" not in supervised.opts


def test_a_config_that_trains_no_soft_teacher_is_refused():
    with pytest.raises(ConfigError, match="MODEL.META_ARCHITECTURE SoftTeacher"):
        train_twin.plan_arms(SOFT_TEACHER_DEMO, ["MODEL.META_ARCHITECTURE", "GeneralizedRCNN"])


def test_launch_options_go_to_every_arm_and_scale_the_schedule_they_train(monkeypatch, tmp_path):
    started = []

    class Recorded:
        def __init__(self, command, output_dir, gpu, log_name, threads=None):
            started.append((command, gpu))

        def poll(self):
            return 1

    scaled = ["SOLVER.REFERENCE_WORLD_SIZE", "1", "SOFT_TEACHER.BURN_IN_ITERS", "1000"]
    runs = train_twin.plan_arms(SOFT_TEACHER_DEMO, scaled)
    launch_args = train_twin.launch_arguments(2, 2, 1, "tcp://10.0.0.1:29500")
    assert launch_args == ["--num-gpus", "2", "--num-machines", "2", "--machine-rank", "1", "--dist-url",
                           "tcp://10.0.0.1:29500"]
    scheduler = branch_runs.Scheduler(runs, str(tmp_path), (), parallel=1, launch=Recorded, launch_args=launch_args,
                                      world_size=4)
    assert scheduler.max_iter(runs[1]) == 300 and scheduler.burn_in(runs[1]) == 250  # 1200 and 1000 over 4
    scheduler.start_ready()
    command, gpu = started[0]
    assert command[2:4] == ["--config-file", SOFT_TEACHER_DEMO] and command[4:12] == launch_args
    assert gpu is None  # each arm's train_net.py spreads itself over the GPUs
    assert train_twin.launch_arguments() == []


def test_several_gpus_on_one_machine_pick_a_free_port():
    """train_net.py's default --dist-url is one port per user, which a second job would find taken."""
    assert train_twin.launch_arguments(num_gpus=2) == ["--num-gpus", "2", "--dist-url", "auto"]


def test_a_machine_of_rank_above_zero_fails_when_its_share_of_an_arm_failed(tmp_path, monkeypatch):
    def failed_branch(self):
        assert self.machine_rank == 1 and self.log_name == "stdout.machine1.log"
        return {"supervised": {"state": "trained"}, "soft_teacher": {"state": "failed (exit code 1)"}}

    monkeypatch.setattr(branch_runs.Scheduler, "run", failed_branch)
    monkeypatch.setattr(train_twin, "prepare_datasets", lambda cfgs: {})
    with pytest.raises(train_twin.TwinError, match=r"rank 1\):\n  the Soft Teacher arm: failed \(exit code 1\)$"):
        train_twin.train_twin(SOFT_TEACHER_DEMO, str(tmp_path), num_machines=2, machine_rank=1,
                              dist_url="tcp://10.0.0.1:29500")


def test_a_failed_arm_is_an_error_naming_its_log(tmp_path, monkeypatch):
    def no_training(self):
        return {"supervised": {"state": f"failed (exit code 1; see {tmp_path}/supervised/stdout.log)"},
                "soft_teacher": {"state": "not started: supervised/model_0000999.pth is missing"}}

    monkeypatch.setattr(branch_runs.Scheduler, "run", no_training)
    monkeypatch.setattr(train_twin, "prepare_datasets", lambda cfgs: {})
    with pytest.raises(train_twin.TwinError) as error:
        train_twin.train_twin(SOFT_TEACHER_DEMO, str(tmp_path))
    supervised_line, soft_line = str(error.value).splitlines()
    assert "the supervised twin arm" in supervised_line and "exit code 1" in supervised_line
    assert "the Soft Teacher arm" in soft_line and "not started" in soft_line
    assert soft_line.endswith(f"Read {tmp_path}/supervised/stdout.log (the trainer's log.txt is beside it).")


@pytest.mark.parametrize("setting, message", [({"parallel": 0}, "at least one arm at a time, not 0"),
                                              ({"threads": -1}, "at least one CPU thread, not -1"),
                                              ({"parallel": 2, "num_gpus": 2}, r"one after the other \(--parallel 1\)"),
                                              ({"opts": ["DATASETS.TEST", "()"]}, "has no DATASETS.TEST")])
def test_settings_that_cannot_train_or_compare_are_refused_before_training(setting, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        train_twin.train_twin(SOFT_TEACHER_DEMO, str(tmp_path), **setting)
    assert not os.listdir(tmp_path)


def test_a_branch_point_past_the_schedule_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)cannot branch.*BURN_IN_ITERS is 5000"):  # the tool's exit code 2
        train_twin.train_twin(SOFT_TEACHER_DEMO, str(tmp_path), ["SOFT_TEACHER.BURN_IN_ITERS", "5000"])
    assert not os.listdir(tmp_path)


def test_the_command_line_refuses_a_config_without_soft_teacher_with_exit_code_2(tmp_path):
    config = os.path.join(REPO_ROOT, "configs", "shapes", "supervised_R18_FPN_5pct.yaml")
    completed = run_tool("train_twin", ["--config-file", config, "--output", str(tmp_path)], timeout=120)
    assert completed.returncode == 2 and "MODEL.META_ARCHITECTURE SoftTeacher" in completed.stdout


def test_box_ap_of_the_arms_comes_from_their_final_evaluations():
    soft = {"teacher": {"AP": 31.456, "APl": float("nan")}, "student": {"AP": 29.0}}
    box_ap = train_twin.box_ap_of_arms({"model": {"AP": 30.0, "AP50": 50.0}}, soft)
    assert box_ap == {"teacher": {"AP": 31.46, "APl": None}, "student": {"AP": 29.0},
                      "supervised": {"AP": 30.0, "AP50": 50.0}}


def test_ap_differences_are_each_soft_teacher_model_minus_the_supervised_twin():
    box_ap = {"teacher": {"AP": 31.46}, "student": {"AP": 29.0}, "supervised": {"AP": 30.0}}
    assert train_twin.ap_differences(box_ap) == {"teacher - supervised": pytest.approx(1.46),
                                                 "student - supervised": pytest.approx(-1.0)}
    assert train_twin.ap_differences({"teacher": {"AP": 31.0}, "supervised": {"AP": None}}) == {
        "teacher - supervised": None, "student - supervised": None}


def test_pseudo_label_summary_takes_the_health_figures_and_leaves_the_missing_ones_none():
    stats = {"pseudo/precision": 0.81234, "pseudo/recall": 0.4, "pseudo/boxes_per_image_cls": 1.5,
             "pseudo/boxes_per_image_rpn": 9.0, "pseudo/precision_at_0.5": 0.3,
             "pseudo/boxes_per_image_labeled": 4.5, "pseudo/class_share_distance": 0.12}
    summary = train_twin.pseudo_label_summary(stats)
    assert summary["precision"] == 0.8123 and summary["recall"] == 0.4 and summary["boxes_per_image"] == 1.5
    assert summary["labeled_boxes_per_image"] == 4.5 and summary["class_share_distance"] == 0.12
    assert summary["class_share_max_ratio"] is None and summary["wrong_class_share"] is None
    assert set(summary) == set(train_twin.PSEUDO_KEYS)


def test_summary_prints_each_test_set_the_differences_and_the_pseudo_labels():
    pseudo = dict.fromkeys(train_twin.PSEUDO_KEYS)
    pseudo.update(precision=0.8123, recall=0.4, boxes_per_image=1.25, labeled_boxes_per_image=4.5,
                  class_share_distance=0.12, class_share_max_ratio=1.4, teacher_score_mean=0.87)
    results = {
        "torch_threads": 2, "parallel": 1, "device": "cpu", "seconds": {"total": 600.0},
        "max_iter": 900, "burn_in_iters": 600, "cls_pseudo_thresh": 0.9,
        "box_ap": {"shapes_val": {"teacher": {"AP": 31.46, "AP50": 50.0}, "student": {"AP": 29.0},
                                  "supervised": {"AP": 30.0, "AP50": None}}},
        "ap_difference": {"shapes_val": {"teacher - supervised": 1.46, "student - supervised": -1.0}},
        "pseudo_labels": pseudo,
        "pseudo_labels_png": None, "training_curves_png": "out/training_curves.png",
        "results_json": "out/results.json",
        "runs": {"supervised": {"output_dir": "out/supervised"}, "soft_teacher": {"output_dir": "out/soft_teacher"}},
    }
    text = "\n".join(train_twin.summary_lines(results))
    assert "Finished in 10.0 min (two train_net.py runs one after the other, device cpu, 2 CPU threads each" in text
    assert "shapes_val:" in text
    assert "teacher    box AP 31.5  AP50 50.0" in text and "supervised box AP 30.0  AP50 n/a" in text
    assert "teacher - supervised: +1.5 AP" in text and "student - supervised: -1.0 AP" in text
    assert "score >= 0.9" in text and "1.25 per image (the labeled images have 4.50)" in text
    assert "class shares 0.12 from the labeled set's (largest ratio 1.4x)" in text
    assert "precision 0.81, recall 0.40 against the hidden annotations" in text
    assert "after 900 iterations" in text and "at iteration 600" in text and "out/supervised" in text
    assert "pseudo labels:" not in text  # no picture was drawn
