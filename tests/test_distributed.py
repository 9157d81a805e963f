"""Two processes on the CPU (gloo), as two "machines" on 127.0.0.1: train_net.py through launch."""
import os
import socket
import subprocess

import pytest

from helpers import read_metrics, repo_script, tiny_semisup_cfg, write_config


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_machine(config_file, rank, dist_url, opts):
    args = ["--config-file", config_file, "--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank),
            "--dist-url", dist_url, *opts]
    return repo_script("train_net.py", args, launch=subprocess.Popen)


@pytest.mark.slow
def test_two_machine_gloo_run_completes_and_pools_pseudo_stats_when_one_rank_gets_no_pseudo_box(tmp_path):
    cfg = tiny_semisup_cfg(tmp_path)
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 2, 2  # 1 + 1 per rank
    cfg.SOFT_TEACHER.NO_PSEUDO_BOX_WARN_ITERS = 2
    config_file = write_config(cfg, tmp_path / "config.yaml")
    dist_url = f"tcp://127.0.0.1:{free_port()}"
    # Rank 1's teacher must reach score 1.0 for a pseudo box: it trains on none, while rank 0 gets some.
    unreachable = ["SOFT_TEACHER.INITIAL_SCORE_THRESH", "1.0", "SOFT_TEACHER.RPN_PSEUDO_THRESH", "1.0",
                   "SOFT_TEACHER.CLS_PSEUDO_THRESH", "1.0"]
    machines = [start_machine(config_file, 0, dist_url, []), start_machine(config_file, 1, dist_url, unreachable)]
    try:
        outputs = [machine.communicate(timeout=300)[0] for machine in machines]
    finally:
        for machine in machines:
            machine.kill()
    for rank, (machine, output) in enumerate(zip(machines, outputs)):
        assert machine.returncode == 0, f"machine {rank}:\n{output[-3000:]}"

    assert "World size: 2" in outputs[0]
    train_rows = [r for r in read_metrics(cfg.OUTPUT_DIR) if "total_loss" in r]
    assert train_rows[-1]["iteration"] == cfg.SOLVER.MAX_ITER - 1
    assert train_rows[-1]["pseudo/boxes_per_image_cls"] > 0  # rank 0's images
    # Rank 1 alone has none; its warning hook reads the stats pooled over both ranks, so it stays quiet.
    with open(os.path.join(cfg.OUTPUT_DIR, "log.txt.rank1")) as f:
        assert "No pseudo box passed the thresholds" not in f.read()
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
