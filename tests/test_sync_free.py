"""Box and Instances operations that read nothing back from the GPU, or once where Detectron2's read per field."""
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from detectron2.structures import Boxes, Instances
from helpers import DEVICES
from soft_teacher.diagnostics import pseudo_label_counts
from soft_teacher.modeling.sync_free import clip_boxes, select
from soft_teacher.modeling.view_geometry import instances_to_view


class _HostReads(TorchDispatchMode):
    """Counts the aten ops that read a tensor's values back to the host: on a GPU each waits for the stream.
    Copies to the host (``.cpu()``, ``.tolist()``) are not aten ops on a CPU and are not counted."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        aten = torch.ops.aten
        bool_index = func is aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        )
        self.count += bool_index or func in (aten.nonzero.default, aten._local_scalar_dense.default,
                                             aten.is_nonzero.default, aten.masked_select.default)
        return func(*args, **(kwargs or {}))


def four_fields(count=5):
    """``count`` boxes of 30 x 30 px and more, on a 64 x 64 image, with classes, scores and uncertainties."""
    corners = torch.arange(count, dtype=torch.float32)[:, None]
    instances = Instances((64, 64), gt_boxes=Boxes(torch.cat([corners, corners, corners + 30, corners + 32], dim=1)))
    instances.gt_classes = torch.arange(count)
    instances.scores = torch.linspace(0.1, 0.9, count)
    instances.uncertainty = torch.linspace(0.01, 0.05, count)
    return instances


def test_select_keeps_the_masked_rows_of_every_field_with_one_host_read():
    instances, mask = four_fields(), torch.tensor([True, False, True, True, False])
    with _HostReads() as detectron2_reads:
        expected = instances[mask]
    with _HostReads() as reads:
        selected = select(instances, mask)
    assert detectron2_reads.count == 4 and reads.count == 1
    for name, value in expected.get_fields().items():
        got = selected.get(name)
        assert torch.equal(got.tensor if name == "gt_boxes" else got, value.tensor if name == "gt_boxes" else value)


def test_select_of_an_all_false_mask_is_empty():
    assert len(select(four_fields(), torch.zeros(5, dtype=torch.bool))) == 0


def test_clip_boxes_clamps_like_detectron2_without_reading_back():
    boxes = torch.tensor([[-5.0, 3, 200, 90], [10, -1, 20, 500], [1, 2, 3, 4]])
    expected = Boxes(boxes.clone())
    expected.clip((100, 150))
    with _HostReads() as reads:
        clipped = clip_boxes(boxes, (100, 150))
    assert torch.equal(clipped, expected.tensor) and reads.count == 0


def test_moving_instances_between_views_reads_back_once():
    with _HostReads() as reads:
        moved = instances_to_view(four_fields(), torch.diag(torch.tensor([0.5, 0.5, 1.0])), (32, 32))
    assert reads.count == 1 and len(moved) == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_pseudo_label_counts_of_gpu_candidates_wait_for_the_gpu_at_most_once_and_equal_the_cpu_counts():
    candidates = [four_fields(5).to("cuda"), four_fields(3).to("cuda"), four_fields(0).to("cuda")]
    annotations = [four_fields(2), four_fields(1), four_fields(0)]  # the mapper leaves them on the CPU
    on_cpu = [c.to("cpu") for c in candidates]
    expected = pseudo_label_counts(on_cpu, on_cpu, on_cpu, on_cpu, 0.5, 3, annotations)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            counts = pseudo_label_counts(candidates, candidates, candidates, candidates, 0.5, 3, annotations)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert counts.device.type == "cpu" and torch.equal(counts, expected)
    assert len([w for w in caught if "synchroniz" in str(w.message)]) <= 1  # the one copy of candidates and classes


@pytest.mark.parametrize("device", DEVICES)
def test_pseudo_label_counts_refuse_candidates_that_are_not_finite(device):
    candidates = four_fields(3)
    candidates.uncertainty[1] = float("nan")
    candidates = [candidates.to(device)]
    with pytest.raises(FloatingPointError, match="SOLVER.BASE_LR"):
        pseudo_label_counts(candidates, candidates, candidates, candidates, 0.5, 3)
