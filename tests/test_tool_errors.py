"""The tools' command-line error path: an input that fails before any model is built gives one line
``error: ...`` naming what is wrong on stderr, exit code 2, and no traceback."""
import os
import subprocess

import pytest

from helpers import REPO_ROOT, run_tool

DEMO_CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "soft_teacher_demo.yaml")

# tool -> (its arguments, the bad path the error must name); {missing} is a folder that does not exist,
# {tmp} one that does.
BAD_INPUTS = {
    "export_teacher": (["--config-file", DEMO_CONFIG, "--checkpoint", "{missing}/model_final.pth",
                        "--output", "{tmp}/teacher.pth"], "{missing}/model_final.pth"),
    "visualize_pseudo_labels": (["--config-file", "{missing}/config.yaml", "--checkpoint", "{tmp}/model.pth",
                                 "--input", "{tmp}", "--output", "{tmp}/pictures"], "{missing}/config.yaml"),
    "measure_pseudo_labels": (["--config-file", "{missing}/config.yaml", "--checkpoint", "{tmp}/model.pth",
                               "--dataset", "shapes_val"], "{missing}/config.yaml"),
    "plot_metrics": (["{missing}/run"], "{missing}/run"),
    "class_agnostic_ap": (["--dataset", "shapes_val", "{missing}/coco_instances_results.json"],
                          "{missing}/coco_instances_results.json"),
    "train_twin": (["--config-file", "{missing}/config.yaml", "--output", "{tmp}/twin"], "{missing}/config.yaml"),
}


@pytest.mark.parametrize("tool", list(BAD_INPUTS))
def test_a_bad_path_exits_with_code_2_and_a_one_line_error_naming_it(tool, tmp_path):
    args, bad_path = BAD_INPUTS[tool]
    paths = dict(missing=str(tmp_path / "missing"), tmp=str(tmp_path))
    completed = run_tool(tool, [arg.format(**paths) for arg in args], stderr=subprocess.PIPE)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    assert "Traceback" not in output
    last_line = completed.stderr.strip().splitlines()[-1]
    assert "error: " in last_line and bad_path.format(**paths) in last_line, output
