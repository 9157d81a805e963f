"""View matrices: each transform's 3x3 matrix, composition in order, and clear errors for unknown geometry."""
import numpy as np
import pytest
from detectron2.data import transforms as T
from fvcore.transforms.transform import TransformList

from soft_teacher.data.transforms import register_transform_matrix, transform_matrix
from soft_teacher.data.transforms.affine import AffineTransform, rotation_matrix
from soft_teacher.data.transforms.erasing import EraseTransform
from soft_teacher.data.transforms.photometric import PhotometricTransform
from soft_teacher.data.transforms.resize_flip import CV2HFlipTransform, CV2ResizeTransform


def _apply(matrix, points):
    return (np.c_[points, np.ones(len(points))] @ matrix.T)[:, :2]


def test_resize_matrix_scales_by_new_over_old():
    np.testing.assert_allclose(transform_matrix(T.ResizeTransform(100, 200, 50, 300)), np.diag([1.5, 0.5, 1.0]))


def test_flip_matrices_map_x_to_width_minus_x_and_y_to_height_minus_y():
    np.testing.assert_allclose(_apply(transform_matrix(T.HFlipTransform(80)), [[0, 5], [80, 7]]), [[80, 5], [0, 7]])
    np.testing.assert_allclose(_apply(transform_matrix(T.VFlipTransform(60)), [[3, 0], [4, 60]]), [[3, 60], [4, 0]])


def test_crop_matrix_moves_the_crop_corner_to_the_origin():
    np.testing.assert_allclose(_apply(transform_matrix(T.CropTransform(10, 20, 30, 40)), [[10, 20]]), [[0, 0]])


def test_colour_transforms_have_the_identity_matrix():
    for tfm in (T.NoOpTransform(), PhotometricTransform("equalize"), EraseTransform([[0, 0, 4, 4]]),
                T.ColorTransform(lambda x: x)):
        np.testing.assert_array_equal(transform_matrix(tfm), np.eye(3))


def test_list_matrix_composes_in_order_and_agrees_with_apply_coords():
    tfms = TransformList([
        CV2ResizeTransform(60, 80, 90, 120),
        CV2HFlipTransform(120),
        PhotometricTransform("solarize", 128),
        AffineTransform(rotation_matrix(17, (60, 45)), 90, 120),
        T.CropTransform(5, 7, 100, 70),
    ])
    points = np.random.RandomState(0).uniform(0, 60, size=(10, 2))
    matrix = transform_matrix(tfms)
    np.testing.assert_allclose(_apply(matrix, points), tfms.apply_coords(points.copy()), atol=1e-9)
    expected = np.eye(3)
    for t in tfms.transforms:  # A = A_n @ ... @ A_1
        expected = transform_matrix(t) @ expected
    np.testing.assert_allclose(matrix, expected)
    resize_then_flip = transform_matrix(TransformList(tfms.transforms[:2]))
    np.testing.assert_allclose(resize_then_flip, [[-1.5, 0, 120], [0, 1.5, 0], [0, 0, 1]])


def test_unknown_geometric_transform_raises_naming_it():
    with pytest.raises(TypeError, match="RotationTransform"):
        transform_matrix(T.RotationTransform(50, 50, angle=10))


def test_register_transform_matrix_declares_a_custom_transform():
    class ShiftRight(T.Transform):
        def apply_image(self, img):
            return img

        def apply_coords(self, coords):
            return coords + [4, 0]

    register_transform_matrix(ShiftRight, lambda t: np.array([[1.0, 0, 4], [0, 1, 0], [0, 0, 1]]))
    np.testing.assert_allclose(_apply(transform_matrix(ShiftRight()), [[1, 2]]), [[5, 2]])
