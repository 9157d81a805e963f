"""EMA of the teacher: t = m * t + (1 - m) * s on parameters and float buffers, integer buffers copied;
the reference's momentum warm-up m_k = min(m, 1 - 1 / (k + 1))."""
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from helpers import DEVICES
from soft_teacher.modeling.ema import copy_student_to_teacher, ema_momentum, ema_update


def tiny_net(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    net.train()
    net(torch.randn(8, 3))  # moves the BatchNorm running statistics and counts one batch
    return net


def snapshot(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("device", DEVICES)
def test_ema_update_follows_the_formula_on_parameters_and_float_buffers(device):
    teacher, student = tiny_net(0).to(device), tiny_net(1).to(device)
    student(torch.randn(8, 3, device=device))  # the student has now seen 2 batches, the teacher 1
    before_t, before_s = snapshot(teacher), snapshot(student)
    ema_update(teacher, student, momentum=0.9)
    after = teacher.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        assert torch.allclose(after[name], 0.9 * before_t[name] + 0.1 * before_s[name]), name
    assert after["1.num_batches_tracked"].item() == 2  # integer buffer: copied from the student
    assert torch.equal(snapshot(student)["0.weight"], before_s["0.weight"])  # the student is untouched


def test_momentum_one_keeps_the_teacher_and_zero_copies_the_student():
    teacher, student = tiny_net(0), tiny_net(1)
    before = snapshot(teacher)
    ema_update(teacher, student, momentum=1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items() if "num_batches" not in k)
    ema_update(teacher, student, momentum=0.0)
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in teacher.state_dict().items())


def test_copy_student_to_teacher_makes_them_identical():
    teacher, student = tiny_net(0), tiny_net(1)
    with torch.no_grad():
        teacher[0].weight.fill_(float("nan"))  # copied over, not averaged with
    copy_student_to_teacher(teacher, student)
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in teacher.state_dict().items())


def test_ema_update_keeps_a_frozen_teacher_frozen_and_out_of_the_graph():
    teacher, student = tiny_net(0), tiny_net(1)
    teacher.requires_grad_(False)
    ema_update(teacher, student, momentum=0.5)
    assert all(not p.requires_grad and p.grad_fn is None for p in teacher.parameters())


def test_different_architectures_are_refused():
    with pytest.raises(ValueError, match="same architecture"):
        ema_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2)), momentum=0.9)


def test_a_momentum_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="EMA_MOMENTUM"):
        ema_update(tiny_net(0), tiny_net(1), momentum=1.5)


def test_ema_momentum_warms_up_like_the_reference_then_stays_at_m():
    # microsoft/SoftTeacher MeanTeacher(warm_up=0): min(m, 1 - 1 / (k + 1)) at the k-th update.
    assert [ema_momentum(0.999, k) for k in range(4)] == pytest.approx([0.0, 1 / 2, 2 / 3, 3 / 4])
    assert ema_momentum(0.999, 998) == pytest.approx(1 - 1 / 999)  # still below m
    assert ema_momentum(0.999, 999) == pytest.approx(0.999)  # 1 - 1/1000 = m
    assert ema_momentum(0.999, 1000) == 0.999  # capped from here on
    assert ema_momentum(0.999, 10**6) == 0.999
    assert [ema_momentum(0.5, k) for k in range(4)] == [0.0, 0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match=">= 0"):
        ema_momentum(0.999, -1)


def test_warmed_up_updates_make_the_teacher_the_running_mean_of_the_students():
    teacher = nn.Linear(1, 1, bias=False)
    student = nn.Linear(1, 1, bias=False)
    values = [4.0, 1.0, 7.0, 2.0]
    for k, value in enumerate(values):
        nn.init.constant_(student.weight, value)
        ema_update(teacher, student, ema_momentum(0.999, k))
        assert teacher.weight.item() == pytest.approx(sum(values[: k + 1]) / (k + 1))


def test_momentum_zero_copies_even_over_a_non_finite_teacher():
    teacher, student = tiny_net(0), tiny_net(1)
    with torch.no_grad():
        teacher[0].weight.fill_(float("nan"))
        teacher[1].running_var.fill_(float("inf"))
    ema_update(teacher, student, momentum=0.0)
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in teacher.state_dict().items())


class _TorchCallCounter(TorchFunctionMode):
    """Counts the torch calls that run a kernel; a multi-tensor (``_foreach``) op counts once, as on CUDA."""

    NO_KERNEL = {"is_floating_point", "detach", "_set_grad_enabled"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += getattr(func, "__name__", "") not in self.NO_KERNEL
        return func(*args, **(kwargs or {}))


def test_ema_update_makes_a_fixed_number_of_torch_calls_whatever_the_number_of_layers():
    """On a GPU each call is a kernel launch: two per tensor would cost an R50-FPN about 600 launches a step."""
    counts = []
    for depth in (2, 40):
        teacher, student = (nn.Sequential(*[nn.Linear(4, 4) for _ in range(depth)]) for _ in range(2))
        counter = _TorchCallCounter()
        with counter:
            ema_update(teacher, student, momentum=0.9)
        counts.append(counter.count)
    assert counts[0] == counts[1] <= 4
