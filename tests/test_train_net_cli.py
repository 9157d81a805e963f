"""train_net.py from the command line: config errors in one line, training and --resume."""
import os

import pytest

from helpers import make_tiny_cfg, read_metrics, run_train_net, tiny_semisup_cfg, write_config


def test_misspelled_key_on_the_command_line_fails_with_one_line_naming_it(tmp_path):
    config_file = write_config(make_tiny_cfg(), tmp_path / "config.yaml")
    result = run_train_net(["--config-file", config_file, "SOLVER.MAX_ITERS", "10"], timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "train_net.py: error: Unknown config key 'SOLVER.MAX_ITERS' in the command line. "
        "Did you mean SOLVER.MAX_ITER? Remove or correct it; see soft_teacher/config.py."
    )


def test_unknown_key_in_the_config_file_fails_with_one_line_naming_it_and_the_file(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("SOFT_TEACHER:\n  UNSUP_WEIGHTS: 2.0\n")
    result = run_train_net(["--config-file", str(config_file)], timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("train_net.py: error: Unknown config key 'SOFT_TEACHER.UNSUP_WEIGHTS'")
    assert str(config_file) in last_line and "SOFT_TEACHER.UNSUP_WEIGHT?" in last_line


@pytest.mark.slow
def test_resume_continues_at_the_iteration_after_the_last_checkpoint(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.SOLVER.CHECKPOINT_PERIOD = 1  # model_0000000.pth after iteration 0, then model_final.pth
    cfg.DATASETS.TEST = ()
    config_file = write_config(cfg, tmp_path / "config.yaml")
    first = run_train_net(["--config-file", config_file])
    assert first.returncode == 0, first.stdout[-3000:]
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_0000000.pth"))

    # As if the run had stopped after iteration 0.
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"), "w") as f:
        f.write("model_0000000.pth")
    resumed = run_train_net(["--config-file", config_file, "--resume"])
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "Starting training from iteration 1" in resumed.stdout
    assert [r["iteration"] for r in read_metrics(cfg.OUTPUT_DIR) if "total_loss" in r] == [1, 1]


def test_startup_prints_no_torch_jit_script_deprecation_from_detectron2_import():
    result = run_train_net(["--help"], timeout=120)
    assert result.returncode == 0
    assert "torch.jit.script" not in result.stdout
