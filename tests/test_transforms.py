"""Each transform moves boxes exactly as it moves pixels (draw a filled box, transform both, compare)."""
import numpy as np
import pytest
from detectron2.data import transforms as T
from PIL import Image, ImageEnhance, ImageOps

from helpers import box_image, bright_extent
from soft_teacher.config import GEOMETRIC_OPS, PHOTOMETRIC_OPS, get_cfg
from soft_teacher.data.transforms import RandomAffine, RandomErasing, RandomOrder, RandomPhotometric
from soft_teacher.data.transforms.affine import AffineTransform, rotation_matrix, shear_matrix, translation_matrix
from soft_teacher.data.transforms.erasing import EraseTransform
from soft_teacher.data.transforms.photometric import PhotometricTransform
from soft_teacher.data.transforms.resize_flip import CV2HFlipTransform, CV2ResizeTransform, CV2VFlipTransform

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


@pytest.mark.parametrize("op", GEOMETRIC_OPS)
def test_random_affine_ops_move_box_with_pixels(op):
    np.random.seed(3)
    aug = RandomAffine(ops=(op,), translate_frac=0.1, rotate_deg=30, shear_deg=20)
    for _ in range(3):
        tfm = aug.get_transform(np.zeros((H, W, 3), np.uint8))
        assert not np.allclose(tfm.matrix, np.eye(3))
        np.testing.assert_allclose(_moved_box(tfm), _pixel_box(tfm), atol=1.0)


def _op_of(matrix: np.ndarray) -> str:
    """Which RandomAffine op made ``matrix`` (each has its own shape)."""
    linear, shift = matrix[:2, :2], matrix[:2, 2]
    if np.allclose(linear, np.eye(2)):
        return "translate_x" if shift[1] == 0 else "translate_y"
    if np.isclose(linear[0, 1], -linear[1, 0]) and np.isclose(linear[0, 0], linear[1, 1]):
        return "rotate"
    assert linear[0, 0] == 1.0 and np.allclose(shift, 0.0)  # shear about the origin: [[1, a], [b, 1 + ab]]
    return "shear"


def test_geometric_ops_have_the_reference_odds_translate_half_rotate_quarter_shear_quarter():
    # microsoft/SoftTeacher: OneOf([translate x, translate y, rotate, [shear x, shear y]]).
    assert GEOMETRIC_OPS == ("translate_x", "translate_y", "rotate", "shear")
    np.random.seed(0)
    aug, image = RandomAffine(), np.zeros((H, W, 3), np.uint8)
    n = 4000
    drawn = [_op_of(aug.get_transform(image).matrix) for _ in range(n)]
    freq = {op: drawn.count(op) / n for op in GEOMETRIC_OPS}
    for op in GEOMETRIC_OPS:  # binomial std sqrt(0.25 * 0.75 / 4000) = 0.007
        assert abs(freq[op] - 0.25) < 0.03, freq
    assert abs(freq["translate_x"] + freq["translate_y"] - 0.5) < 0.03, freq


def test_translations_move_along_one_axis_by_at_most_the_fraction_of_that_side():
    np.random.seed(1)
    image = np.zeros((H, W, 3), np.uint8)
    for op, axis, side in (("translate_x", 0, W), ("translate_y", 1, H)):
        shifts = np.array([RandomAffine(ops=(op,), translate_frac=0.1).get_transform(image).matrix[:2, 2]
                           for _ in range(2000)])
        assert (shifts[:, 1 - axis] == 0).all()
        assert np.abs(shifts[:, axis]).max() <= 0.1 * side
        assert np.abs(shifts[:, axis]).max() > 0.095 * side and abs(shifts[:, axis].mean()) < 0.01 * side


def test_shear_factor_is_tanh_of_the_angle_about_the_top_left_corner():
    a = np.tanh(np.pi / 6)  # 30 degrees: 0.48 (tan would give 0.58)
    np.testing.assert_allclose(shear_matrix(30, 0), [[1, a, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(shear_matrix(0, -30), [[1, 0, 0], [-a, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(shear_matrix(30, 30), [[1, a, 0], [a, 1 + a * a, 0], [0, 0, 1]])  # x, then y
    np.random.seed(2)
    aug, image = RandomAffine(ops=("shear",), shear_deg=30), np.zeros((H, W, 3), np.uint8)
    matrices = np.array([aug.get_transform(image).matrix for _ in range(4000)])
    np.testing.assert_allclose(matrices[:, :2, 2], 0.0)  # the origin stays put, as in mmcv's imshear
    x_deg = np.degrees(np.arctanh(matrices[:, 0, 1]))
    y_deg = np.degrees(np.arctanh(matrices[:, 1, 0]))
    for angles in (x_deg, y_deg):  # each angle uniform in [-30, 30] degrees
        assert np.abs(angles).max() <= 30 + 1e-9 and np.abs(angles).max() > 29.5
        assert abs(angles.mean()) < 1.0 and abs(np.abs(angles).mean() - 15.0) < 0.6
    assert abs(np.corrcoef(x_deg, y_deg)[0, 1]) < 0.05  # drawn independently


def test_random_affine_rejects_unknown_ops_and_explains_the_old_translate():
    with pytest.raises(ValueError, match="translate_x.*translate_y.*rotate.*shear.*'translate' is now two ops"):
        RandomAffine(ops=("translate", "rotate"))
    with pytest.raises(ValueError, match="non-empty subset"):
        RandomAffine(ops=())


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


def _possible_ratios(rect, height, width):
    """The ratios r with int(r * height), int(r * width) == the rectangle's height, width: [low, high)."""
    x0, y0, x1, y1 = rect
    return max((y1 - y0) / height, (x1 - x0) / width), min((y1 - y0 + 1) / height, (x1 - x0 + 1) / width)


def test_erasing_fills_rectangles_proportional_to_the_image_inside_it_and_keeps_boxes():
    np.random.seed(0)
    image = box_image(H, W, BOX)
    tfm = RandomErasing(count=(3, 3), max_frac=0.3, fill=7).get_transform(image)
    assert isinstance(tfm, EraseTransform) and len(tfm.rects) == 3
    out = tfm.apply_image(image)
    for x0, y0, x1, y1 in tfm.rects:
        assert 0 <= x0 <= x1 < W and 0 <= y0 <= y1 < H  # randint(0, W - w): never touches the last column
        low, high = _possible_ratios((x0, y0, x1, y1), H, W)
        assert low < high and low < 0.3  # one ratio r for both sides: r * H high, r * W wide
        assert (out[y0:y1, x0:x1] == 7).all()
    np.testing.assert_array_equal(image, box_image(H, W, BOX))  # input untouched
    np.testing.assert_array_equal(_moved_box(tfm), BOX)


def test_erasing_draws_1_to_4_grey_rectangles_uniformly_like_the_reference():
    # microsoft/SoftTeacher RandErase(n_iterations=(1, 5), size=[0, 0.2], squared=True):
    # np.random.randint(1, 5) rectangles, filled with img_fill_val 125.
    assert get_cfg().INPUT.ERASE_COUNT == (1, 4) and get_cfg().INPUT.ERASE_MAX_FRAC == 0.2
    np.random.seed(0)
    aug, image = RandomErasing(), np.zeros((H, W, 3), np.uint8)
    n = 4000
    counts = np.array([len(aug.get_transform(image).rects) for _ in range(n)])
    assert set(counts.tolist()) == {1, 2, 3, 4}
    for k in (1, 2, 3, 4):  # binomial std 0.007
        assert abs((counts == k).mean() - 0.25) < 0.03
    out = EraseTransform([[2, 3, 10, 8]]).apply_image(np.zeros((H, W, 3), np.uint8))
    assert (out[3:8, 2:10] == 125).all() and out.sum() == 125 * 5 * 8 * 3


def test_erased_rectangle_sides_are_one_uniform_ratio_of_the_image_sides_at_uniform_positions():
    height, width = 500, 1000  # large, so that int() truncation hardly matters
    np.random.seed(1)
    aug, image = RandomErasing(count=(1, 1), max_frac=0.2), np.zeros((height, width, 1), np.uint8)
    rects = np.array([aug.get_transform(image).rects[0] for _ in range(3000)])
    heights, widths = rects[:, 3] - rects[:, 1], rects[:, 2] - rects[:, 0]
    assert np.abs(heights / height - widths / width).max() < 1 / height  # the same r for both sides
    ratio = widths / width  # r ~ U(0, 0.2): mean 0.1, std 0.2 / sqrt(12)
    assert ratio.max() < 0.2 and ratio.min() < 0.005
    assert abs(ratio.mean() - 0.1) < 0.005 and abs(ratio.std() - 0.2 / np.sqrt(12)) < 0.005
    # top-left corner uniform in 0 .. side - rect - 1: its relative position has mean 1/2
    assert (rects[:, 2] <= width - 1).all() and (rects[:, 3] <= height - 1).all()
    assert abs((rects[:, 0] / (width - widths)).mean() - 0.5) < 0.03
    assert abs((rects[:, 1] / (height - heights)).mean() - 0.5) < 0.03


def test_erasing_rejects_bad_counts_and_fractions():
    with pytest.raises(ValueError, match="ERASE_COUNT"):
        RandomErasing(count=(3, 2))
    with pytest.raises(ValueError, match="ERASE_MAX_FRAC"):
        RandomErasing(max_frac=1.0)


def test_random_order_applies_both_augmentations_in_each_order_half_of_the_time():
    np.random.seed(0)
    order = RandomOrder([RandomPhotometric(("autocontrast",)), RandomAffine(("rotate",))])
    n, photometric_first = 1000, 0
    for _ in range(n):
        tfms = order(T.AugInput(box_image(H, W, BOX)))
        kinds = [type(t) for t in tfms.transforms]
        assert sorted(k.__name__ for k in kinds) == ["AffineTransform", "PhotometricTransform"]
        photometric_first += kinds[0] is PhotometricTransform
    assert abs(photometric_first / n - 0.5) < 0.05  # binomial std 0.016
    with pytest.raises(TypeError, match="Augmentations"):
        RandomOrder([AffineTransform(np.eye(3), H, W)])
