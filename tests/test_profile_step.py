"""The step profiler (tools/profile_step.py): named stages, and a tiny CPU run."""
import importlib
import os

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from helpers import run_tool
from profile_step import REGIONS, named_regions
from soft_teacher.modeling import sync_free


def resolve(module_name, path):
    owner = importlib.import_module(module_name)
    for attribute in path.split("."):
        owner = getattr(owner, attribute)
    return owner


def test_named_regions_record_each_call_through_the_module_and_restore_the_functions():
    original = sync_free.clip_boxes
    with named_regions([("soft_teacher.modeling.sync_free", "clip_boxes", "clipping")]):
        assert sync_free.clip_boxes is not original
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(3):
                sync_free.clip_boxes(torch.zeros(2, 4), (8, 8))
    assert sync_free.clip_boxes is original
    assert [e.count for e in profiler.key_averages() if e.key == "clipping"] == [3]


def test_every_profiled_stage_names_a_function_of_the_package():
    originals = [resolve(module, path) for module, path, _ in REGIONS]
    assert all(callable(f) for f in originals)
    with named_regions():
        assert all(resolve(module, path) is not f for (module, path, _), f in zip(REGIONS, originals))
    assert all(resolve(module, path) is f for (module, path, _), f in zip(REGIONS, originals))


@pytest.mark.slow
def test_profiling_a_soft_teacher_step_reports_each_stage_once_per_step(tmp_path):
    output = tmp_path / "profile"
    completed = run_tool("profile_step", [
        "--output", str(output), "--warmup", "0", "--steps", "1", "--amp", "off", "--num-images", "2",
        "--candidates", "3", "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96",
        "DATALOADER.NUM_WORKERS", "0",
    ], timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:]
    report = (output / "profile_soft_teacher_fp32.txt").read_text()
    rows = {line.split(" | ")[0]: line.split(" | ")[1] for line in report.splitlines() if line.count(" | ") == 3}
    assert {region for _, _, region in REGIONS} | {"training_step"} <= set(rows)
    assert all(calls == "1.0" for name, calls in rows.items() if name != "region")
    assert os.path.getsize(output / "profile_soft_teacher_fp32_trace.json.gz") > 0
