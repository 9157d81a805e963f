"""The accuracy benchmark (tools/benchmark_accuracy.py, with tools/branch_runs.py, which trains its runs) and the
speed benchmark (tools/benchmark_speed.py): their arithmetic, and a tiny CPU run of each; and that the installed
package holds none of them.

The CPU runs here use tiny settings; they check that the scripts train, branch, read back and
report what they should, so that a long benchmark spends its time measuring, not debugging.
"""
import ast
import importlib
import json
import os
import pkgutil

import pytest
import torch

import benchmark_accuracy as accuracy
import benchmark_speed as speed
import branch_runs
import soft_teacher
from helpers import REPO_ROOT, read_metrics, run_tool, write_metrics
from soft_teacher.engine import ConfigError

BenchmarkRun = accuracy.BenchmarkRun
SUP_1, SOFT_1 = BenchmarkRun("supervised", 1, 1), BenchmarkRun("soft_teacher", 1, 1)
# The benchmark's schedule shrunk: the Soft Teacher run branches at B = 2 from model_0000001.pth.
BRANCH_AT_2 = ["SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0",
               "SOLVER.CHECKPOINT_PERIOD", "2", "SOFT_TEACHER.BURN_IN_ITERS", "2"]
MACHINE = {"card": "CPU", "gpus": 0, "cpu_cores": 2, "torch": "t", "detectron2": "d", "python": "p"}


class FakeProcess:
    """A train_net.py process that runs until told otherwise."""

    def __init__(self):
        self.code = None

    def poll(self):
        return self.code

    def stop(self):
        self.code = -15


class FakeLauncher:
    def __init__(self):
        self.commands, self.log_names = [], []

    def __call__(self, command, output_dir, gpu, log_name):
        self.commands.append(list(command))
        self.log_names.append(log_name)
        return FakeProcess()

    def started(self, run):
        return [c for c in self.commands if c[c.index("OUTPUT_DIR") + 1].endswith(run.name)]


def test_gap_closed_is_the_share_of_the_supervised_to_ceiling_gap():
    assert accuracy.gap_closed(ap_soft=40.0, ap_sup=30.0, ap_full=50.0) == pytest.approx(0.5)
    assert accuracy.gap_closed(ap_soft=25.0, ap_sup=30.0, ap_full=50.0) == pytest.approx(-0.25)


def test_gap_closed_is_undefined_without_a_positive_gap_or_a_figure():
    assert accuracy.gap_closed(ap_soft=40.0, ap_sup=50.0, ap_full=50.0) is None
    assert accuracy.gap_closed(ap_soft=None, ap_sup=30.0, ap_full=50.0) is None


def test_spread_is_the_mean_and_half_range_over_seeds():
    figures = accuracy.spread({2: 64.2, 1: 62.0})
    assert figures["mean"] == pytest.approx(63.1) and figures["half_range"] == pytest.approx(1.1)
    assert figures["values"] == {"1": 62.0, "2": 64.2}
    assert accuracy.spread({}) is None


def summary_entry(method, percent, seed, box_ap, max_iter=2400, ceiling="supervised_100pct_seed1",
                  dataset="shapes_test"):
    """A run's entry as collect_results writes it (its ``box_ap`` on ``dataset``), for summarize and markdown."""
    entry = {"method": method, "percent": percent, "seed": seed, "box_ap": {dataset: box_ap}, "max_iter": max_iter}
    if percent != 100:
        entry["ceiling"] = ceiling
    if method == "soft_teacher":
        entry["burn_in_iters"] = max_iter // 2
    return entry


def test_summary_pairs_seeds_and_closes_the_gap_on_the_seed_means():
    per_run = {
        "supervised_5pct_seed1": summary_entry("supervised", 5, 1, {"model": 60.0}),
        "supervised_5pct_seed2": summary_entry("supervised", 5, 2, {"model": 64.0}),
        "supervised_100pct_seed1": summary_entry("supervised", 100, 1, {"model": 72.0}),
        "soft_teacher_5pct_seed1": summary_entry("soft_teacher", 5, 1, {"teacher": 65.0, "student": 61.0}),
        "soft_teacher_5pct_seed2": summary_entry("soft_teacher", 5, 2, {"teacher": 67.0, "student": 63.0}),
    }
    entry = accuracy.summarize(per_run, "shapes_test")["5"]
    assert entry["seeds"] == [1, 2] and entry["ceiling"] == 72.0
    assert entry["supervised"]["mean"] == 62.0 and entry["teacher"]["mean"] == 66.0
    assert entry["gap_closed"]["teacher"] == pytest.approx((66.0 - 62.0) / (72.0 - 62.0))
    assert entry["gap_closed"]["student"] == pytest.approx(0.0)
    assert entry["difference"] == {"teacher": {"1": 5.0, "2": 3.0}, "student": {"1": 1.0, "2": -1.0}}
    results = {"runs": per_run, "test_sets": ["shapes_test"], "percents": {"shapes_test": {"5": entry}},
               "machine": MACHINE, "opts": []}
    row = next(line for line in accuracy.markdown(results, "cmd").splitlines() if line.startswith("| 5% "))
    assert row == ("| 5% | 2400 / 1200 | 1, 2 | 62.0 ± 2.0 (60.0, 64.0) | 66.0 ± 1.0 (65.0, 67.0) "
                   "| 62.0 ± 1.0 (61.0, 63.0) | 72.0 | 40% / 0% | seed 1: +5.0, seed 2: +3.0 "
                   "| seed 1: +1.0, seed 2: -1.0 |")


def test_each_percent_closes_the_gap_to_the_ceiling_of_its_own_schedule():
    long_ceiling = "supervised_100pct_seed1_max_iter3600_steps3000"
    per_run = {
        "supervised_1pct_seed1": summary_entry("supervised", 1, 1, {"model": 20.0}, 3600, long_ceiling),
        "soft_teacher_1pct_seed1": summary_entry("soft_teacher", 1, 1, {"teacher": 30.0, "student": 25.0}, 3600,
                                                 long_ceiling),
        "supervised_5pct_seed1": summary_entry("supervised", 5, 1, {"model": 60.0}),
        "soft_teacher_5pct_seed1": summary_entry("soft_teacher", 5, 1, {"teacher": 62.0, "student": 61.0}),
        "supervised_100pct_seed1": summary_entry("supervised", 100, 1, {"model": 64.0}),
        long_ceiling: summary_entry("supervised", 100, 1, {"model": 70.0}, 3600),
    }
    summary = accuracy.summarize(per_run, "shapes_test")
    assert summary["1"]["ceiling"] == 70.0 and summary["1"]["gap_closed"]["teacher"] == pytest.approx(0.2)
    assert summary["5"]["ceiling"] == 64.0 and summary["5"]["gap_closed"]["teacher"] == pytest.approx(0.5)
    results = {"runs": per_run, "test_sets": ["shapes_test"], "percents": {"shapes_test": summary},
               "machine": MACHINE, "opts": []}
    assert "| 1% | 3600 / 1800 | 1 | 20.0 | 30.0 | 25.0 | 70.0 | 20% / 10% |" in accuracy.markdown(results, "cmd")


def test_the_held_out_test_set_is_reported_first_and_each_test_set_has_its_own_table():
    per_run = {}
    for dataset, shift in (("shapes_val", 0.0), ("shapes_test", -2.0)):
        for name, entry in {
            "supervised_5pct_seed1": summary_entry("supervised", 5, 1, {"model": 60.0 + shift}, dataset=dataset),
            "supervised_100pct_seed1": summary_entry("supervised", 100, 1, {"model": 64.0 + shift}, dataset=dataset),
            "soft_teacher_5pct_seed1": summary_entry(
                "soft_teacher", 5, 1, {"teacher": 62.0 + shift, "student": 61.0 + shift}, dataset=dataset),
        }.items():
            per_run.setdefault(name, dict(entry, box_ap={}))["box_ap"].update(entry["box_ap"])
    test_sets = ["shapes_val", "shapes_test"]
    results = {"runs": per_run, "test_sets": test_sets, "machine": MACHINE, "opts": [],
               "percents": {dataset: accuracy.summarize(per_run, dataset) for dataset in test_sets}}
    text = accuracy.markdown(results, "cmd", "curves.png")
    assert "on shapes_test, then shapes_val (shapes_test: held out, it chose no setting" in text
    assert text.index("**shapes_test**") < text.index("**shapes_val**")
    assert "| 5% | 2400 / 1200 | 1 | 58.0 | 60.0 | 59.0 | 62.0 |" in text
    assert "| 5% | 2400 / 1200 | 1 | 60.0 | 62.0 | 61.0 | 64.0 |" in text
    assert "![Box AP on shapes_test during training](curves.png)" in text


def test_without_ceilings_no_100pct_run_is_planned_and_the_report_has_no_ceiling_columns(tmp_path):
    runs = accuracy.plan_runs([(5, 1)], ceilings=False)
    assert [run.name for run in runs] == ["supervised_5pct_seed1", "soft_teacher_5pct_seed1"]
    write_metrics(tmp_path / "supervised_5pct_seed1", [{"iteration": 2400, "shapes_test/bbox/AP": 60.0,
                                                        "shapes_val/bbox/AP": 61.0}])
    write_metrics(tmp_path / "soft_teacher_5pct_seed1", [{"iteration": 2400, **{
        f"{arm}/{dataset}/bbox/AP": ap for arm, ap in (("teacher", 63.0), ("student", 62.0))
        for dataset in ("shapes_test", "shapes_val")}}])
    results = accuracy.collect_results(runs, str(tmp_path), [], {})
    assert results["percents"]["shapes_test"]["5"]["ceiling_run"] is None
    text = accuracy.markdown(results, "cmd")
    assert ("| labeled | schedule | seeds | supervised | Soft Teacher (teacher) | Soft Teacher (student) "
            "| teacher - supervised | student - supervised |") in text
    assert "| 5% | 2400 / 1200 | 1 | 60.0 | 63.0 | 62.0 | seed 1: +3.0 | seed 1: +2.0 |" in text
    assert "in parentheses. The last two columns pair the runs of each seed" in text
    assert "ceiling" not in text and "Gap closed" not in text


def test_without_ceilings_a_percent_whose_solver_no_ceiling_could_train_is_still_reported(tmp_path, monkeypatch):
    base = os.path.join(REPO_ROOT, "configs", "shapes", "Base-Shapes-Benchmark.yaml")
    write_config(tmp_path / "supervised_R18_FPN_100pct.yaml", base)
    write_config(tmp_path / "supervised_R18_FPN_10pct.yaml", base, CLIP_GRADIENTS="{CLIP_VALUE: 5.0}")
    write_config(tmp_path / "soft_teacher_R18_FPN_10pct.yaml",
                 os.path.join(REPO_ROOT, "configs", "shapes", "soft_teacher_R18_FPN_5pct.yaml"),
                 CLIP_GRADIENTS="{CLIP_VALUE: 5.0}")
    monkeypatch.setattr(accuracy, "CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="SOLVER.CLIP_GRADIENTS"):
        accuracy.plan_runs([(10, 1)])
    runs = accuracy.plan_runs([(10, 1)], ceilings=False)
    results = accuracy.collect_results(runs, str(tmp_path / "output"), [], {})
    assert results["percents"]["shapes_test"]["10"]["ceiling_run"] is None


def test_the_ceiling_is_trained_unless_no_ceiling_is_given():
    assert accuracy.parse_args(["--percents", "5"]).ceilings
    assert not accuracy.parse_args(["--percents", "5", "--no-ceiling"]).ceilings


def test_the_table_names_the_machine_class_and_the_software_versions_but_no_date():
    per_run = {
        "supervised_5pct_seed1": summary_entry("supervised", 5, 1, {"model": 60.0}),
        "supervised_100pct_seed1": summary_entry("supervised", 100, 1, {"model": 64.0}),
        "soft_teacher_5pct_seed1": summary_entry("soft_teacher", 5, 1, {"teacher": 62.0, "student": 61.0}),
    }
    results = {"runs": per_run, "test_sets": ["shapes_test"], "percents": {"shapes_test": accuracy.summarize(
        per_run, "shapes_test")}, "machine": MACHINE, "opts": []}
    machine = next(line for line in accuracy.markdown(results, "cmd").splitlines() if line.startswith("Machine:"))
    assert machine == "Machine: CPU, 2 CPU cores; torch t, Detectron2 d, Python p."


def write_config(path, base, **solver):
    lines = [f"_BASE_: {str(base)!r}"] + (["SOLVER:"] if solver else [])
    lines += [f"  {key}: {value}" for key, value in solver.items()]
    path.write_text("\n".join(lines) + "\n")


def test_a_percent_trained_on_another_schedule_gets_a_ceiling_on_that_schedule(tmp_path, monkeypatch):
    base = os.path.join(REPO_ROOT, "configs", "shapes", "Base-Shapes-Benchmark.yaml")
    write_config(tmp_path / "supervised_R18_FPN_100pct.yaml", base)
    write_config(tmp_path / "supervised_R18_FPN_5pct.yaml", base)
    write_config(tmp_path / "supervised_R18_FPN_1pct.yaml", base, MAX_ITER=3600, STEPS="(3000,)",
                 CHECKPOINT_PERIOD=1800)
    monkeypatch.setattr(accuracy, "CONFIG_DIR", str(tmp_path))
    assert accuracy.ceiling_for(5) == BenchmarkRun("supervised", 100, 1)
    ceiling = accuracy.ceiling_for(1)
    assert ceiling.name == "supervised_100pct_seed1_max_iter3600_steps3000"
    cfg = ceiling.config()
    assert cfg.SOLVER.MAX_ITER == 3600 and tuple(cfg.SOLVER.STEPS) == (3000,) and cfg.SEED == 1
    write_config(tmp_path / "supervised_R18_FPN_10pct.yaml", base, CLIP_GRADIENTS="{CLIP_VALUE: 5.0}")
    with pytest.raises(ConfigError, match="SOLVER.CLIP_GRADIENTS"):
        accuracy.ceiling_for(10)
    names = [run.name for run in accuracy.plan_runs([(1, 1), (5, 1), (5, 2)])]
    assert names == ["supervised_1pct_seed1", "supervised_5pct_seed1", "supervised_5pct_seed2", ceiling.name,
                     "supervised_100pct_seed1", "soft_teacher_1pct_seed1", "soft_teacher_5pct_seed1",
                     "soft_teacher_5pct_seed2"]


def test_final_box_ap_reads_the_evaluation_after_the_last_iteration_not_a_periodic_one(tmp_path):
    out = write_metrics(tmp_path / "run", [
        {"iteration": 999, "teacher/bbox/AP": 10.0, "student/bbox/AP": 9.0},
        {"iteration": 2999, "total_loss": 1.0},
        {"iteration": 3000, "teacher/bbox/AP": 41.0, "student/bbox/AP": 40.0},
    ])
    assert branch_runs.final_box_ap(out, max_iter=3000) == {"teacher": 41.0, "student": 40.0}
    assert branch_runs.last_iteration(out) == 3000


def test_final_evaluation_gives_every_coco_field_of_each_model_at_the_last_evaluation(tmp_path):
    out = write_metrics(tmp_path / "run", [
        {"iteration": 299, "bbox/AP": 5.0, "bbox/AP50": 9.0},
        {"iteration": 599, "total_loss": 1.0},
        {"iteration": 600, "bbox/AP": 20.0, "bbox/AP50": 35.0, "bbox/APl": float("nan"), "bbox/AP-circle": 25.0},
    ])
    evaluation = branch_runs.final_evaluation(out, max_iter=600)
    assert set(evaluation) == {"model"} and set(evaluation["model"]) == {"AP", "AP50", "APl", "AP-circle"}
    assert evaluation["model"]["AP50"] == 35.0 and evaluation["model"]["APl"] != evaluation["model"]["APl"]  # NaN
    assert branch_runs.final_evaluation(out, max_iter=900) is None


def test_with_several_test_sets_each_is_read_under_its_name(tmp_path):
    out = write_metrics(tmp_path / "run", [
        {"iteration": 600, "teacher/shapes_val/bbox/AP": 20.0, "teacher/shapes_test/bbox/AP": 18.0,
         "teacher/shapes_test/bbox/AP50": 30.0, "student/shapes_test/bbox/AP": 17.0}])
    keys = branch_runs.test_set_keys(["shapes_val", "shapes_test"])
    assert keys == {"shapes_val": "shapes_val", "shapes_test": "shapes_test"}
    assert branch_runs.final_box_ap(out, 600, keys["shapes_test"]) == {"teacher": 18.0, "student": 17.0}
    assert branch_runs.final_evaluation(out, 600, "shapes_test")["teacher"] == {"AP": 18.0, "AP50": 30.0}
    assert branch_runs.final_box_ap(out, 600, keys["shapes_val"]) == {"teacher": 20.0}
    assert branch_runs.final_box_ap(out, 600) is None  # no run of one test set
    assert branch_runs.test_set_keys(["shapes_val"]) == {"shapes_val": None}


def test_a_run_resumed_from_an_earlier_checkpoint_has_trained_up_to_its_last_record_not_its_highest(tmp_path):
    out = write_metrics(tmp_path / "run", [{"iteration": 2379, "total_loss": 0.4},  # interrupted here...
                                           {"iteration": 1219, "total_loss": 0.5}])  # ...resumed from 1199
    assert branch_runs.last_iteration(out) == 1220
    assert branch_runs.last_iteration(str(tmp_path / "not_started")) == 0


def test_final_box_ap_is_none_while_a_run_has_only_periodic_evaluations(tmp_path):
    out = write_metrics(tmp_path / "run", [{"iteration": 999, "bbox/AP": 10.0}, {"iteration": 1500, "total_loss": 1.0}])
    assert branch_runs.final_box_ap(out, max_iter=3000) is None
    assert branch_runs.final_box_ap(str(tmp_path / "never_started"), max_iter=3000) is None


def test_pseudo_label_stats_average_the_records_of_the_last_100_iterations(tmp_path):
    out = write_metrics(tmp_path / "run", [
        {"iteration": 99, "pseudo/precision": 0.1, "total_loss": 1.0},  # before the window (179, 279]
        {"iteration": 199, "pseudo/precision": 0.5, "pseudo/recall": 0.4, "total_loss": 1.0},
        {"iteration": 219, "pseudo/precision": 0.7, "total_loss": 1.0},
        {"iteration": 259, "total_loss": 1.0},
        {"iteration": 279, "pseudo/precision": 0.9, "total_loss": 1.0},
        {"iteration": 280, "teacher/bbox/AP": 30.0},
    ])
    stats = branch_runs.pseudo_label_stats(out)
    assert stats == {"pseudo/precision": pytest.approx(0.7), "pseudo/recall": pytest.approx(0.4)}


def test_a_branch_starts_from_a_copy_of_its_twins_burn_in_checkpoint(tmp_path):
    output = tmp_path / "out"
    (output / SUP_1.name).mkdir(parents=True)
    (output / SUP_1.name / "model_0000001.pth").write_bytes(b"weights after iteration 1")
    launch = FakeLauncher()
    scheduler = branch_runs.Scheduler([SOFT_1.run], str(output), BRANCH_AT_2, parallel=1, launch=launch)
    scheduler.start_ready()
    branch = output / SOFT_1.name
    assert (branch / "model_0000001.pth").read_bytes() == b"weights after iteration 1"
    assert (branch / "last_checkpoint").read_text() == "model_0000001.pth"
    [command] = launch.started(SOFT_1)
    assert command[command.index("--config-file") + 1] == SOFT_1.config_file and "--resume" in command
    assert command[command.index("SEED") + 1] == "1" and command[-len(BRANCH_AT_2):] == BRANCH_AT_2


def test_on_a_machine_of_rank_above_zero_a_branch_waits_for_machine_0s_copy_of_the_checkpoint(tmp_path):
    output = tmp_path / "out"
    (output / SUP_1.name).mkdir(parents=True)
    (output / SUP_1.name / "model_0000001.pth").write_bytes(b"weights after iteration 1")
    launch = FakeLauncher()
    scheduler = branch_runs.Scheduler([SOFT_1.run], str(output), BRANCH_AT_2, parallel=1, launch=launch,
                                      machine_rank=1)
    scheduler.start_ready()
    assert launch.commands == [] and "machine 0 copies" in scheduler.waiting_for(SOFT_1.run)
    assert not (output / SOFT_1.name).exists()  # only machine 0 writes the branch's folder
    branch_runs.start_branch(str(output / SUP_1.name), str(output / SOFT_1.name), 2)  # machine 0's copy
    scheduler.start_ready()
    [command] = launch.started(SOFT_1)
    assert "--resume" in command and launch.log_names == ["stdout.machine1.log"]


def test_a_run_folder_of_another_schedule_is_refused_instead_of_read_or_resumed(tmp_path):
    output = tmp_path / "out"
    folder = output / SUP_1.name
    folder.mkdir(parents=True)
    saved = SUP_1.run.config(BRANCH_AT_2)
    saved.SOLVER.MAX_ITER = 800
    (folder / "config.yaml").write_text(saved.dump())
    with pytest.raises(ConfigError, match=r"(?s)another config.*SOLVER.MAX_ITER: 800 saved vs 4 now"):
        branch_runs.Scheduler([SUP_1.run], str(output), BRANCH_AT_2, parallel=1, launch=FakeLauncher())
    saved.SOLVER.MAX_ITER = 4
    (folder / "config.yaml").write_text(saved.dump())
    assert branch_runs.Scheduler([SUP_1.run], str(output), BRANCH_AT_2, parallel=1, launch=FakeLauncher()).todo


def test_a_run_folder_of_the_same_config_on_more_gpus_is_resumed_though_it_trains_a_scaled_schedule(tmp_path):
    """train_net.py saves the config before REFERENCE_WORLD_SIZE scales it: that is what a folder is checked with."""
    output = tmp_path / "out"
    folder = output / SUP_1.name
    folder.mkdir(parents=True)
    saved = SUP_1.run.config(BRANCH_AT_2 + ["SOLVER.REFERENCE_WORLD_SIZE", "1"])
    (folder / "config.yaml").write_text(saved.dump())
    scheduler = branch_runs.Scheduler([SUP_1.run], str(output), BRANCH_AT_2 + ["SOLVER.REFERENCE_WORLD_SIZE", "1"],
                                      parallel=1, launch=FakeLauncher(), world_size=2)
    assert scheduler.todo and scheduler.max_iter(SUP_1.run) == saved.SOLVER.MAX_ITER // 2


@pytest.mark.parametrize("section, key, value, shown", [
    ("SOFT_TEACHER", "UNSUP_LOSSES", ("rpn",), r"SOFT_TEACHER.UNSUP_LOSSES: \['rpn'\]"),
    ("INPUT", "STRONG_GEOMETRIC_OPS", ("rotate",), r"INPUT.STRONG_GEOMETRIC_OPS: \['rotate'\]"),
    ("INPUT", "ERASE_MAX_FRAC", 0.5, r"INPUT.ERASE_MAX_FRAC: 0.5"),
])
def test_a_soft_teacher_folder_of_other_method_or_student_view_settings_is_refused_but_one_older_than_the_key_is_read(
        tmp_path, section, key, value, shown):
    output = tmp_path / "out"
    folder = output / SOFT_1.name
    folder.mkdir(parents=True)
    saved = SOFT_1.run.config(BRANCH_AT_2)
    setattr(saved[section], key, value)
    (folder / "config.yaml").write_text(saved.dump())
    with pytest.raises(ConfigError, match=rf"(?s)another config.*{shown} saved"):
        branch_runs.Scheduler([SOFT_1.run], str(output), BRANCH_AT_2, parallel=1, launch=FakeLauncher())
    del saved[section][key]  # a run from before the key existed
    (folder / "config.yaml").write_text(saved.dump())
    assert branch_runs.Scheduler([SOFT_1.run], str(output), BRANCH_AT_2, parallel=1, launch=FakeLauncher()).todo


def test_soft_teacher_settings_that_do_not_change_training_or_a_supervised_run_do_not_refuse_a_folder(tmp_path):
    output = tmp_path / "out"
    for run, change in ((SOFT_1, ("EVAL_MODEL", "student")), (SUP_1, ("CLS_PSEUDO_THRESH", 0.5))):
        folder = output / run.name
        folder.mkdir(parents=True)
        saved = run.run.config(BRANCH_AT_2)
        setattr(saved.SOFT_TEACHER, *change)
        (folder / "config.yaml").write_text(saved.dump())
        assert branch_runs.saved_config_differences(str(folder), run.run.config(BRANCH_AT_2)) == []


def test_a_supervised_folder_saved_with_another_student_view_is_read(tmp_path):
    """A supervised run never builds the student view: keys of it that changed since do not refuse it."""
    saved = SUP_1.run.config(BRANCH_AT_2)
    saved.INPUT.STRONG_GEOMETRIC_OPS = ("rotate", "shear")
    (tmp_path / "config.yaml").write_text(saved.dump())
    assert branch_runs.saved_config_differences(str(tmp_path), SUP_1.run.config(BRANCH_AT_2)) == []


def test_a_branch_waits_until_its_twin_has_written_the_burn_in_checkpoint(tmp_path):
    output = tmp_path / "out"
    launch = FakeLauncher()
    runs = [SUP_1.run, SOFT_1.run]
    scheduler = branch_runs.Scheduler(runs, str(output), BRANCH_AT_2, parallel=2, launch=launch)
    scheduler.start_ready()
    assert len(launch.started(SUP_1)) == 1 and not launch.started(SOFT_1)
    assert any("waiting for supervised_1pct_seed1/model_0000001.pth" in line for line in scheduler.progress())
    twin = output / SUP_1.name
    twin.mkdir(parents=True)
    (twin / "model_0000001.pth").write_bytes(b"being written")  # not named in last_checkpoint yet
    scheduler.start_ready()
    assert not launch.started(SOFT_1) and not (output / SOFT_1.name / "last_checkpoint").exists()
    (twin / "last_checkpoint").write_text("model_0000001.pth")
    scheduler.start_ready()
    assert len(launch.started(SOFT_1)) == 1


def test_seeds_may_be_given_for_every_percent_or_per_percent():
    assert accuracy.seed_table([1, 5], {None: [1, 2]}) == [(1, 1), (1, 2), (5, 1), (5, 2)]
    assert accuracy.seed_table([1, 5], {None: [1, 2], 5: [1, 2, 3]}) == [(1, 1), (1, 2), (5, 1), (5, 2), (5, 3)]
    assert accuracy.seed_table([1, 5], {1: [3]}) == [(1, 3), (5, 1), (5, 2)]  # 5%: DEFAULT_TABLE's seeds
    with pytest.raises(ValueError, match=r"\[10\]"):
        accuracy.seed_table([1, 5], {10: [1]})


@pytest.mark.parametrize("seeds", ["10=1", "a=1"])
def test_accuracy_benchmark_refuses_seeds_of_a_percent_it_does_not_run_or_not_numbers(seeds, tmp_path):
    completed = run_tool("benchmark_accuracy", ["--output", str(tmp_path / "unused"), "--percents", "1,5",
                                                "--seeds", seeds])
    assert completed.returncode == 2 and "--seeds" in completed.stdout and "Traceback" not in completed.stdout


def test_a_burn_in_the_checkpoint_period_does_not_reach_is_refused_before_training(tmp_path):
    opts = BRANCH_AT_2[:-1] + ["3"]  # B = 3: model_0000002.pth, but period 2 saves model_0000001/3 only
    problems = branch_runs.branch_problems([SUP_1.run, SOFT_1.run], opts)
    assert len(problems) == 1 and "model_0000002.pth" in problems[0] and "CHECKPOINT_PERIOD 2" in problems[0]
    output = tmp_path / "unused"
    completed = run_tool("benchmark_accuracy", ["--output", str(output), "--percents", "1", "--seeds", "1"] + opts)
    assert completed.returncode == 2 and "cannot branch" in completed.stdout and not output.exists()


def test_a_branch_whose_twin_trains_another_schedule_or_data_is_refused():
    soft = branch_runs.Run("soft", SOFT_1.run.config_file, ("SOLVER.GAMMA", "0.5", "DATASETS.TRAIN", "('shapes_val',)"),
                           twin=SUP_1.run)
    problems = branch_runs.branch_problems([SUP_1.run, soft], BRANCH_AT_2)
    assert len(problems) == 1 and "SOLVER.GAMMA" in problems[0] and "DATASETS.TRAIN" in problems[0]


def test_a_branch_may_set_its_own_student_view_but_not_the_labeled_views():
    student_view = branch_runs.Run("soft", SOFT_1.run.config_file,
                                   ("INPUT.STRONG_GEOMETRIC_OPS", "('translate_x',)", "INPUT.ERASE_MAX_FRAC", "0.1"),
                                   twin=SUP_1.run)
    assert branch_runs.branch_problems([SUP_1.run, student_view], BRANCH_AT_2) == []
    labeled_view = branch_runs.Run("soft", SOFT_1.run.config_file, ("INPUT.MAX_SIZE_TRAIN", "100"), twin=SUP_1.run)
    problems = branch_runs.branch_problems([SUP_1.run, labeled_view], BRANCH_AT_2)
    assert len(problems) == 1 and "differ in INPUT" in problems[0]


def test_accuracy_curves_are_plotted_from_each_runs_evaluations(tmp_path):
    per_run = {}
    for method, percent, seed in [("supervised", 5, 1), ("supervised", 5, 2), ("supervised", 100, 1),
                                  ("soft_teacher", 5, 1), ("soft_teacher", 5, 2)]:
        run = BenchmarkRun(method, percent, seed)
        if method == "supervised":
            records = [{"iteration": 3, "bbox/AP": 10.0 + seed}, {"iteration": 8, "bbox/AP": 20.0 + seed}]
        else:
            records = [{"iteration": 5, "teacher/bbox/AP": 15.0, "student/bbox/AP": 14.0},
                       {"iteration": 8, "teacher/bbox/AP": 25.0, "student/bbox/AP": 24.0}]
        write_metrics(tmp_path / run.name, records)
        per_run[run.name] = {"method": method, "percent": percent, "seed": seed, "max_iter": 8}
        if percent != 100:
            per_run[run.name]["ceiling"] = "supervised_100pct_seed1"
        if run.twin:
            per_run[run.name].update(twin=run.twin.name, burn_in_iters=4)
    png = tmp_path / "accuracy_curves.png"
    drawn = accuracy.plot_accuracy_curves(str(tmp_path), per_run, str(png))
    assert png.read_bytes().startswith(b"\x89PNG")
    assert sorted(drawn) == [5] and len(drawn[5]) == 7  # ceiling, 2 supervised, 2 x (teacher, student)
    assert branch_runs.ap_curve(str(tmp_path / "supervised_5pct_seed1"), "bbox/AP", 8) == ([4, 8], [11.0, 21.0])


def test_each_accuracy_panel_draws_the_ceiling_of_its_own_schedule(tmp_path):
    def entry(method, percent, ceiling=None):
        run = {"method": method, "percent": percent, "seed": 1, "max_iter": 8}
        if ceiling:
            run["ceiling"] = ceiling
        if method == "soft_teacher":
            run.update(twin=f"supervised_{percent}pct_seed1", burn_in_iters=4)
        return run

    per_run = {"supervised_1pct_seed1": entry("supervised", 1, "long_ceiling"),
               "soft_teacher_1pct_seed1": entry("soft_teacher", 1, "long_ceiling"),
               "supervised_5pct_seed1": entry("supervised", 5, "ceiling"),
               "soft_teacher_5pct_seed1": entry("soft_teacher", 5, "ceiling"),
               "ceiling": entry("supervised", 100), "long_ceiling": entry("supervised", 100)}
    write_metrics(tmp_path / "ceiling", [{"iteration": 8, "bbox/AP": 60.0}])  # only the 5% row's ceiling has data
    drawn = accuracy.plot_accuracy_curves(str(tmp_path), per_run, str(tmp_path / "curves.png"))
    assert drawn[5] == ["supervised 100% seed 1"] and drawn[1] == []


@pytest.mark.slow
def test_accuracy_benchmark_branches_a_soft_teacher_run_from_its_supervised_twin_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(branch_runs, "POLL_SECONDS", 1)
    output = tmp_path / "accuracy"
    write_metrics(output / "supervised_100pct_seed1", [{"iteration": 4, "bbox/AP": 50.0}])  # finished earlier
    md = tmp_path / "BENCHMARKS.md"
    opts = [*BRANCH_AT_2, "SOLVER.IMS_PER_BATCH", "2", "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "TEST.EVAL_PERIOD", "0",
            "DATASETS.TEST", "('shapes_train_1pct_1',)"]  # 30 test images: a quick evaluation
    results = accuracy.run_benchmark(accuracy.plan_runs([(1, 1)], opts), str(output), opts, parallel=2,
                                     benchmarks_md=str(md), command="python tools/benchmark_accuracy.py")
    assert all(run["box_ap"] is not None for run in results["runs"].values())
    runs = json.loads((output / "results.json").read_text())["runs"]
    assert runs["supervised_100pct_seed1"]["state"] == "finished earlier"
    assert set(runs["supervised_1pct_seed1"]["box_ap"]["shapes_train_1pct_1"]) == {"model"}
    soft = runs["soft_teacher_1pct_seed1"]
    assert soft["state"] == "trained" and set(soft["box_ap"]["shapes_train_1pct_1"]) == {"teacher", "student"}
    assert "pseudo/boxes_per_image_cls" in soft["pseudo_labels"]
    branch = output / "soft_teacher_1pct_seed1"
    assert (branch / "model_0000001.pth").is_file()
    assert "Starting training from iteration 2" in (branch / "log.txt").read_text()
    assert min(r["iteration"] for r in read_metrics(str(branch))) >= 2
    assert (output / "accuracy_curves.png").is_file() and (tmp_path / "docs" / "accuracy_curves.png").is_file()
    assert "![Box AP on shapes_train_1pct_1 during training](docs/accuracy_curves.png)" in md.read_text()
    assert "](accuracy_curves.png)" in (output / "results.md").read_text()


@pytest.mark.slow
def test_speed_benchmark_times_both_iterations_on_the_cpu_and_reports_their_ratio(tmp_path):
    output = str(tmp_path / "speed")
    completed = run_tool("benchmark_speed", [
        "--output", output, "--iters", "2", "--warmup", "1", "--amp", "off", "--num-images", "6", "--candidates", "3",
        "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "DATALOADER.NUM_WORKERS", "0",
    ], timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:]
    with open(os.path.join(output, "results.json")) as f:
        results = json.load(f)
    by_method = {r["method"]: r for r in results["settings"]}
    assert by_method["soft_teacher"]["images_per_iteration"] == 5
    assert by_method["supervised"]["images_per_iteration"] == 5
    assert all(r["timed_iterations"] == 2 and r["median_ms"] > 0 for r in results["settings"])
    assert 0 < by_method["soft_teacher"]["pseudo_boxes_per_image"] <= 3  # at most --candidates reach the losses
    ratio = by_method["soft_teacher"]["median_ms"] / by_method["supervised"]["median_ms"]
    assert results["ratios"]["fp32"] == pytest.approx(ratio)
    # the teacher's forward, the jitter and the EMA come on top of the student's steps
    assert by_method["soft_teacher"]["ops_per_step"] > by_method["supervised"]["ops_per_step"] > 0


class _FakeTrainer:
    iter = 0


@pytest.mark.parametrize("counted_iteration, expected", [(1, 3), (2, 5), (7, None)])
def test_op_counter_counts_the_ops_of_its_iteration_only(counted_iteration, expected):
    counter = speed.OpCounter(iteration=counted_iteration)
    counter.trainer = _FakeTrainer()
    x = torch.ones(4)
    for iteration, adds in ((0, 0), (1, 3), (2, 5)):
        counter.trainer.iter = iteration
        counter.before_step()
        for _ in range(adds):
            x = x + 1
        counter.after_step()
    assert counter.count == expected


def test_op_counter_leaves_no_counting_mode_active_after_a_step_that_raised():
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    counter = speed.OpCounter(iteration=0)
    counter.trainer = _FakeTrainer()
    counter.before_step()
    assert _get_current_dispatch_mode() is not None
    counter.after_train()  # Detectron2 skips after_step when run_step raises
    assert _get_current_dispatch_mode() is None and counter.count is None


def test_speed_benchmark_holds_the_learning_rate_at_the_warmup_start_so_a_random_r50_cannot_diverge():
    cfg = speed.benchmark_config("soft_teacher", amp=False, warmup=10, iters=50, candidates=20, opts=[])
    reference = speed.load_config(speed.CONFIGS["soft_teacher"], [])
    assert cfg.SOLVER.BASE_LR == pytest.approx(reference.SOLVER.BASE_LR * reference.SOLVER.WARMUP_FACTOR)
    assert cfg.SOLVER.WARMUP_ITERS == 0 and cfg.SOLVER.STEPS == ()


def _imported_names(path):
    """The modules that the source file ``path`` imports, by their full names."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names += [node.module or ""] + [f"{node.module or ''}.{alias.name}" for alias in node.names]
    return names


def test_the_package_installs_no_benchmark_code_and_each_of_its_modules_imports():
    """The benchmarks, the demo and what starts train_net.py processes are tools/, outside the package."""
    modules = [info.name for info in pkgutil.walk_packages(soft_teacher.__path__, "soft_teacher.")]
    assert modules and not [name for name in modules if name.split(".")[1] in ("benchmark", "utils")]
    for name in modules:
        try:
            module = importlib.import_module(name)
        except SystemExit as err:
            pytest.fail(f"importing {name} raised SystemExit({err.code})")
        imported = _imported_names(module.__file__)
        assert not [n for n in imported if n.split(".")[0] == "subprocess" or "benchmark" in n], (name, imported)


def test_the_1pct_benchmark_ignores_the_pseudo_classes_and_the_5pct_keeps_the_papers_losses():
    one, five = (BenchmarkRun("soft_teacher", p, 1).run.config([]).SOFT_TEACHER.UNSUP_LOSSES for p in (1, 5))
    assert tuple(one) == ("rpn", "roi_objectness", "roi_reg")
    assert tuple(five) == ("rpn", "roi_cls", "roi_reg")


def test_the_1pct_benchmark_student_view_is_translated_only_and_the_5pct_also_rotates():
    one, five = (BenchmarkRun("soft_teacher", p, 1).run.config([]).INPUT.STRONG_GEOMETRIC_OPS for p in (1, 5))
    assert tuple(one) == ("translate_x", "translate_y")
    assert tuple(five) == ("translate_x", "translate_y", "rotate")


@pytest.mark.parametrize("percent", accuracy.SEMI_SUPERVISED_PERCENTS)
def test_each_shapes_benchmark_branch_can_start_from_its_twins_checkpoint(percent):
    assert branch_runs.branch_problems([BenchmarkRun("soft_teacher", percent, 1).run]) == []


def test_a_benchmark_that_would_test_on_nothing_is_refused_before_training(tmp_path, capsys):
    output = tmp_path / "out"
    code = accuracy.main(["--output", str(output), "--percents", "5", "--seeds", "1", "DATASETS.TEST", "()"])
    assert code == 2 and "would test on nothing" in capsys.readouterr().err
    assert not output.exists()
