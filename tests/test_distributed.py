"""Two processes on the CPU (gloo): train_net.py through launch as two "machines" on 127.0.0.1, and the
pseudo-label diagnostics' one collective when one rank fails."""
import os
import socket
import subprocess
import time

import pytest
import torch
from detectron2.structures import Boxes, Instances

from helpers import read_metrics, repo_script, tiny_semisup_cfg, write_config
from soft_teacher.diagnostics import PseudoLabelDiagnostics
from soft_teacher.modeling import PseudoLabelRecord


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


def _count_pseudo_labels_on_rank(rank, init_method, out_dir):
    """One rank of two: the diagnostics of one pseudo box, not finite on rank 1; writes how the call ended."""
    torch.distributed.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2)
    box = torch.tensor([[0.0, 0.0, float("nan") if rank == 1 else 10.0, 10.0]])
    candidates = [Instances((32, 32), gt_boxes=Boxes(box), gt_classes=torch.tensor([0]), scores=torch.tensor([0.95]),
                            uncertainty=torch.tensor([0.01]))]
    record = PseudoLabelRecord(candidates, candidates, candidates, candidates, [torch.eye(3)], None)
    try:
        PseudoLabelDiagnostics(0.9, 0.5, 2, None, (), 0, 2.0)(record)
        outcome = "returned"
    except Exception as err:  # the outcome is what the test reads
        outcome = f"{type(err).__name__}: {err}"
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        f.write(outcome)
    torch.distributed.destroy_process_group()


def test_non_finite_pseudo_boxes_on_one_rank_stop_every_rank_with_the_message_instead_of_a_hang(tmp_path):
    context = torch.multiprocessing.start_processes(
        _count_pseudo_labels_on_rank, args=(f"tcp://127.0.0.1:{free_port()}", str(tmp_path)), nprocs=2, join=False,
        start_method="spawn")
    deadline = time.time() + 120
    try:
        while not context.join(timeout=5) and time.time() < deadline:
            pass
    finally:
        for process in context.processes:
            process.kill()
    for rank in (0, 1):
        path = tmp_path / f"rank{rank}.txt"
        assert path.exists(), f"rank {rank} did not finish within 120 s: it waits for the other rank"
        outcome = path.read_text()
        assert outcome.startswith("FloatingPointError: The teacher's pseudo boxes"), outcome
        assert outcome.endswith("(rank 1)"), outcome
