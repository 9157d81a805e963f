"""Each transform moves boxes exactly as it moves pixels (draw a filled box, transform both, compare)."""
import numpy as np
import pytest
from detectron2.data import transforms as T
from PIL import Image, ImageEnhance, ImageOps

from data_fixtures import box_image, bright_extent
from soft_teacher.config import PHOTOMETRIC_OPS
from soft_teacher.data.transforms import (
    AffineTransform,
    CV2HFlipTransform,
    CV2ResizeTransform,
    CV2VFlipTransform,
    EraseTransform,
    PhotometricTransform,
    RandomAffine,
    RandomErasing,
    RandomPhotometric,
    rotation_matrix,
    shear_matrix,
    translation_matrix,
)

H, W = 64, 96
BOX = [20, 12, 50, 40]  # x0, y0, x1, y1 in pixels


def _moved_box(tfm) -> np.ndarray:
    return tfm.apply_box(np.array([BOX], dtype=np.float64))[0]


def _pixel_box(tfm) -> np.ndarray:
    return bright_extent(tfm.apply_image(box_image(H, W, BOX)))


@pytest.mark.parametrize("tfm", [CV2HFlipTransform(W), CV2VFlipTransform(H)], ids=["hflip", "vflip"])
def test_flips_move_box_exactly_with_pixels(tfm):
    np.testing.assert_array_equal(_moved_box(tfm), _pixel_box(tfm))


def test_cv2_flips_give_detectron2s_pixels_contiguous():
    image = np.random.RandomState(0).randint(0, 255, (H, W, 3)).astype(np.uint8)
    flipped = CV2HFlipTransform(W).apply_image(image)
    np.testing.assert_array_equal(flipped, T.HFlipTransform(W).apply_image(image))
    assert flipped.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("new_hw", [(96, 144), (32, 48), (80, 100)], ids=["enlarge", "shrink", "anisotropic"])
def test_cv2_resize_moves_box_with_pixels(new_hw):
    tfm = CV2ResizeTransform(H, W, *new_hw)
    np.testing.assert_allclose(_moved_box(tfm), _pixel_box(tfm), atol=1.0)


def test_cv2_resize_matches_detectron2s_pil_resize():
    image = box_image(H, W, BOX)
    ours = CV2ResizeTransform(H, W, 96, 144).apply_image(image).astype(int)
    theirs = T.ResizeTransform(H, W, 96, 144).apply_image(image).astype(int)
    assert ours.shape == theirs.shape == (96, 144, 3)
    assert np.abs(ours - theirs).mean() < 2.0


@pytest.mark.parametrize(
    "matrix",
    [translation_matrix(7, -5), rotation_matrix(90, (W / 2, H / 2)),
     translation_matrix(W - 3, 4) @ np.diag([-1.0, 1.0, 1.0])],
    ids=["integer-translation", "rotate-90-about-centre", "mirror"],
)
def test_affine_pixel_exact_cases_agree_to_the_pixel(matrix):
    """Maps taking pixel cells onto pixel cells: any half-pixel convention error would show as a 1 px shift."""
    tfm = AffineTransform(matrix, H, W)
    np.testing.assert_array_equal(_moved_box(tfm), _pixel_box(tfm))


@pytest.mark.parametrize(
    "matrix",
    [translation_matrix(3.5, -2.25), rotation_matrix(23, (W / 2, H / 2)), shear_matrix(15, -10, (W / 2, H / 2))],
    ids=["subpixel-translation", "rotate-23", "shear"],
)
def test_affine_moves_box_with_pixels(matrix):
    tfm = AffineTransform(matrix, H, W)
    np.testing.assert_allclose(_moved_box(tfm), _pixel_box(tfm), atol=1.0)


@pytest.mark.parametrize("op", ["translate", "rotate", "shear"])
def test_random_affine_ops_move_box_with_pixels(op):
    np.random.seed(3)
    aug = RandomAffine(ops=(op,), translate_frac=0.1, rotate_deg=30, shear_deg=20)
    for _ in range(3):
        tfm = aug.get_transform(np.zeros((H, W, 3), np.uint8))
        assert not np.allclose(tfm.matrix, np.eye(3))
        np.testing.assert_allclose(_moved_box(tfm), _pixel_box(tfm), atol=1.0)


def test_affine_fills_uncovered_pixels_and_inverts():
    tfm = AffineTransform(translation_matrix(10, 0), H, W, fill=125)
    out = tfm.apply_image(box_image(H, W, BOX))
    assert (out[:, :10] == 125).all()
    points = np.array([[3.0, 4.0], [50.5, 20.25]])
    np.testing.assert_allclose(tfm.inverse().apply_coords(tfm.apply_coords(points.copy())), points)


def _pil(op, level):
    return {
        "identity": lambda im: im,
        "autocontrast": ImageOps.autocontrast,
        "equalize": ImageOps.equalize,
        "solarize": lambda im: ImageOps.solarize(im, level),
        "posterize": lambda im: ImageOps.posterize(im, level),
        "color": lambda im: ImageEnhance.Color(im).enhance(level),
        "contrast": lambda im: ImageEnhance.Contrast(im).enhance(level),
        "brightness": lambda im: ImageEnhance.Brightness(im).enhance(level),
        "sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(level),
    }[op]


@pytest.mark.parametrize("op", PHOTOMETRIC_OPS)
def test_photometric_ops_match_pil_within_one_level_and_keep_boxes(op):
    level = {"solarize": 100, "posterize": 2}.get(op, 1.6 if op in ("contrast", "sharpness") else 0.4)
    rng = np.random.RandomState(1)
    rgb = np.clip(rng.normal(120, 40, (H, W, 3)), 0, 255).astype(np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    tfm = PhotometricTransform(op, level, image_format="BGR")
    ours = tfm.apply_image(bgr)[:, :, ::-1].astype(int)
    reference = np.asarray(_pil(op, level)(Image.fromarray(rgb))).astype(int)
    assert np.abs(ours - reference).max() <= 1
    np.testing.assert_array_equal(_moved_box(tfm), BOX)


def test_random_photometric_draws_every_configured_op():
    np.random.seed(0)
    aug = RandomPhotometric(("solarize", "posterize"))
    drawn = {aug.get_transform(None).op for _ in range(40)}
    assert drawn == {"solarize", "posterize"}


def test_random_photometric_rejects_unknown_op():
    with pytest.raises(ValueError, match="blur"):
        RandomPhotometric(("identity", "blur"))


def test_erasing_fills_squares_inside_the_image_and_keeps_boxes():
    np.random.seed(0)
    image = box_image(H, W, BOX)
    tfm = RandomErasing(count=(3, 3), max_frac=0.3, fill=7).get_transform(image)
    assert isinstance(tfm, EraseTransform) and len(tfm.rects) == 3
    out = tfm.apply_image(image)
    for x0, y0, x1, y1 in tfm.rects:
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
        assert x1 - x0 == y1 - y0 <= 0.3 * H
        assert (out[y0:y1, x0:x1] == 7).all()
    np.testing.assert_array_equal(image, box_image(H, W, BOX))  # input untouched
    np.testing.assert_array_equal(_moved_box(tfm), BOX)
