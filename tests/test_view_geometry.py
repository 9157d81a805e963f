"""Boxes between views: M = A_to @ inverse(A_from), 4 corners, enclosing box, clip, drop degenerate."""
import math

import pytest
import torch

from detectron2.structures import Boxes, Instances
from soft_teacher.modeling.view_geometry import (
    boxes_to_view,
    instances_to_view,
    transform_boxes,
    view_to_view_matrix,
)


def rotation_about(degrees, cx, cy):
    """Rotation by ``degrees`` about (cx, cy); with y pointing down, positive is clockwise on screen."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]])


def test_view_to_view_matrix_goes_through_the_original_frame():
    a_teacher = torch.diag(torch.tensor([2.0, 2.0, 1.0]))  # original -> teacher: scale 2
    a_student = torch.tensor([[1.0, 0, 5], [0, 1, 7], [0, 0, 1]])  # original -> student: shift (5, 7)
    m = view_to_view_matrix(a_teacher, a_student)
    # teacher (10, 20) is original (5, 10), which is student (10, 17)
    assert torch.allclose(m @ torch.tensor([10.0, 20.0, 1.0]), torch.tensor([10.0, 17.0, 1.0]))
    assert m.dtype == torch.float32


def test_scale_and_translation_map_a_box_exactly():
    m = torch.tensor([[2.0, 0, 3], [0, 0.5, -1], [0, 0, 1]])
    out = transform_boxes(torch.tensor([[10.0, 20, 30, 40]]), m)
    assert torch.allclose(out, torch.tensor([[23.0, 9, 63, 19]]))


def test_horizontal_flip_mirrors_the_box():
    flip = torch.tensor([[-1.0, 0, 100], [0, 1, 0], [0, 0, 1]])  # image width 100
    out = transform_boxes(torch.tensor([[10.0, 20, 30, 40]]), flip)
    assert torch.allclose(out, torch.tensor([[70.0, 20, 90, 40]]))


def test_rotation_gives_the_box_enclosing_the_rotated_corners():
    # a 20 x 10 box centred at (50, 50), rotated by 30 degrees about its centre
    out = transform_boxes(torch.tensor([[40.0, 45, 60, 55]]), rotation_about(30, 50, 50))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    w, h = 20 * c + 10 * s, 20 * s + 10 * c
    assert torch.allclose(out, torch.tensor([[50 - w / 2, 50 - h / 2, 50 + w / 2, 50 + h / 2]]), atol=1e-4)


def test_shear_slants_the_corners():
    shear_x = torch.tensor([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]])  # x' = x + 0.5 y
    out = transform_boxes(torch.tensor([[0.0, 0, 10, 10]]), shear_x)
    # corners (0, 0), (10, 0), (5, 10), (15, 10)
    assert torch.allclose(out, torch.tensor([[0.0, 0, 15, 10]]))


def test_a_rotated_box_mapped_back_lands_where_geometry_says():
    a_teacher = torch.eye(3)
    a_student = rotation_about(30, 64, 64)
    box = torch.tensor([[40.0, 50, 80, 70]])  # 40 x 20, centre (60, 60)
    to_student = view_to_view_matrix(a_teacher, a_student)
    back = transform_boxes(transform_boxes(box, to_student), view_to_view_matrix(a_student, a_teacher))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    w1, h1 = 40 * c + 20 * s, 40 * s + 20 * c  # enclosing box in the student view
    w2, h2 = w1 * c + h1 * s, w1 * s + h1 * c  # its enclosing box back in the teacher view
    expected = torch.tensor([[60 - w2 / 2, 60 - h2 / 2, 60 + w2 / 2, 60 + h2 / 2]])
    assert torch.allclose(back, expected, atol=1e-3)


def test_boxes_to_view_clips_to_the_image():
    shift = torch.tensor([[1.0, 0, 30], [0, 1, -5], [0, 0, 1]])
    boxes, keep = boxes_to_view(torch.tensor([[50.0, 10, 90, 40]]), shift, image_size=(60, 100))
    assert keep.tolist() == [True]
    assert torch.allclose(boxes, torch.tensor([[80.0, 5, 100, 35]]))


def test_boxes_to_view_marks_boxes_that_leave_the_view_after_rotation():
    # rotating 90 degrees about the image corner (0, 0) sends x > 0 to y > 0 and y > 0 to x < 0
    boxes, keep = boxes_to_view(
        torch.tensor([[10.0, 10, 30, 30], [10.0, -40, 30, -20]]), rotation_about(90, 0, 0), image_size=(64, 64)
    )
    assert keep.tolist() == [False, True]
    assert torch.allclose(boxes[keep], torch.tensor([[20.0, 10, 40, 30]]), atol=1e-4)


def test_boxes_to_view_marks_boxes_thinner_than_one_pixel():
    squash = torch.diag(torch.tensor([1.0, 0.04, 1.0]))
    boxes, keep = boxes_to_view(torch.tensor([[0.0, 0, 20, 20], [0.0, 0, 20, 50]]), squash, image_size=(64, 64))
    assert keep.tolist() == [False, True]  # heights 0.8 and 2 px
    assert boxes.shape == (2, 4)  # every box mapped; the mask says which to keep


def test_instances_to_view_moves_boxes_and_keeps_fields_aligned():
    inst = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[10.0, 10, 20, 20], [100.0, 0, 120, 10]])))
    inst.gt_classes = torch.tensor([2, 1])
    inst.scores = torch.tensor([0.9, 0.6])
    half = torch.diag(torch.tensor([0.5, 0.5, 1.0]))
    moved = instances_to_view(inst, half, image_size=(32, 40))
    assert moved.image_size == (32, 40)
    assert moved.gt_classes.tolist() == [2]  # the second box is at x >= 50, outside the 40 px wide view
    assert moved.scores.tolist() == pytest.approx([0.9])
    assert torch.allclose(moved.gt_boxes.tensor, torch.tensor([[5.0, 5, 10, 10]]))


def test_geometry_runs_in_float32_under_autocast():
    a_teacher = torch.diag(torch.tensor([3.0, 3.0, 1.0])).bfloat16()
    a_student = torch.tensor([[1.0, 0, 0.25], [0, 1, 0], [0, 0, 1]]).bfloat16()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        m = view_to_view_matrix(a_teacher, a_student)
        out = transform_boxes(torch.tensor([[300.0, 3, 303, 6]]), m)
    assert m.dtype == out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[100.25, 1, 101.25, 2]]))


def test_a_matrix_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="3, 3"):
        view_to_view_matrix(torch.eye(2), torch.eye(3))
