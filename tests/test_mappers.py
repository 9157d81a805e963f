"""Mappers: labeled view with its matrix; unlabeled teacher/student views that differ but map onto each other."""
import logging
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from helpers import box_image, bright_extent, captured_logs
from soft_teacher.data import LabeledDatasetMapper, UnlabeledDatasetMapper
from soft_teacher.data.mappers import build_view_augmentations
from soft_teacher.data.transforms import (
    CV2RandomFlip,
    CV2ResizeShortestEdge,
    RandomAffine,
    RandomErasing,
    RandomOrder,
    RandomPhotometric,
    transform_matrix,
)

H, W = 72, 96
BOX = [24, 18, 60, 50]


@pytest.fixture
def image_file(tmp_path):
    path = str(tmp_path / "box.png")
    cv2.imwrite(path, box_image(H, W, BOX))
    return path


def _record(path, **extra):
    return {"file_name": path, "image_id": 7, "height": H, "width": W, **extra}


def _hwc(chw: torch.Tensor) -> np.ndarray:
    return chw.permute(1, 2, 0).numpy()


def _map_box(matrix: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], dtype=np.float64) @ matrix.T
    return np.r_[corners[:, :2].min(axis=0), corners[:, :2].max(axis=0)]


def _geometric_mapper(cfg):
    """The config's views without photometric ops and erasing, whose pixel changes would hide the box."""
    resize_flip = [CV2ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, "range"), CV2RandomFlip()]
    strong = RandomAffine(translate_frac=0.1, rotate_deg=20, shear_deg=15)
    return UnlabeledDatasetMapper(teacher_augmentations=resize_flip, student_augmentations=resize_flip + [strong],
                                  image_format="BGR")


def test_view_augmentations_follow_the_config(tiny_cfg):
    kinds = {view: [type(a) for a in build_view_augmentations(tiny_cfg, view)]
             for view in ("labeled", "teacher", "student")}
    assert kinds["labeled"] == [CV2ResizeShortestEdge, CV2RandomFlip, RandomPhotometric]
    assert kinds["teacher"] == [CV2ResizeShortestEdge, CV2RandomFlip]
    assert kinds["student"] == [CV2ResizeShortestEdge, CV2RandomFlip, RandomOrder, RandomErasing]
    shuffled = build_view_augmentations(tiny_cfg, "student")[2]
    assert [type(a) for a in shuffled.augs] == [RandomPhotometric, RandomAffine]
    tiny_cfg.INPUT.RANDOM_FLIP = "none"
    tiny_cfg.INPUT.PHOTOMETRIC_OPS = ()
    assert [type(a) for a in build_view_augmentations(tiny_cfg, "labeled")] == [CV2ResizeShortestEdge]


def test_student_view_applies_photometric_and_geometric_op_in_a_random_order_with_the_right_matrix(tiny_cfg):
    # The reference's ShuffledSequential. autocontrast keeps the box the brightest region in either
    # order but shows the order in the warp's fill: 125 if it comes after, (125 - 30) * 255 / 200
    # = 121 if it stretches the warped image.
    tiny_cfg.INPUT.PHOTOMETRIC_OPS = ("autocontrast",)
    augs = build_view_augmentations(tiny_cfg, "student")
    augs = T.AugmentationList([a for a in augs if not isinstance(a, RandomErasing)])  # erasing would hide the box
    np.random.seed(0)
    image = box_image(H, W, BOX)
    n, photometric_first, checked_boxes, checked_fill = 400, 0, 0, {True: 0, False: 0}
    for _ in range(n):
        aug_input = T.AugInput(image)
        tfms = augs(aug_input)
        kinds = [type(t).__name__ for t in tfms.transforms]
        first = kinds.index("PhotometricTransform") < kinds.index("AffineTransform")
        photometric_first += first
        matrix = transform_matrix(tfms)
        out = aug_input.image
        expected_box = _map_box(matrix, BOX)
        h, w = out.shape[:2]
        if expected_box[0] > 1 and expected_box[1] > 1 and expected_box[2] < w - 1 and expected_box[3] < h - 1:
            np.testing.assert_allclose(bright_extent(out), expected_box, atol=1.5)
            checked_boxes += 1
        # a pixel whose source lies well outside the original image holds the fill
        y, x = np.mgrid[0:h, 0:w]
        source = np.stack([x.ravel() + 0.5, y.ravel() + 0.5, np.ones(h * w)]).T @ np.linalg.inv(matrix).T
        outside = ((source[:, 0] < -2) | (source[:, 0] > W + 2) | (source[:, 1] < -2) | (source[:, 1] > H + 2))
        if outside.any():
            fill = out.reshape(-1, 3)[outside]
            assert (fill == (125 if first else 121)).all()
            checked_fill[first] += 1
    assert abs(photometric_first / n - 0.5) < 0.08  # binomial std 0.025
    assert min(checked_fill.values()) > 50 and checked_boxes > n // 2


def test_unlabeled_dict_follows_the_contract(tiny_cfg, image_file):
    out = UnlabeledDatasetMapper(tiny_cfg)({"file_name": image_file, "image_id": "box.png"})
    assert set(out) == {"file_name", "image_id", "height", "width", "teacher", "student"}
    assert (out["height"], out["width"]) == (H, W)  # filled from the image for image-folder sets
    for view in ("teacher", "student"):
        image, matrix = out[view]["image"], out[view]["transform_matrix"]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert min(image.shape[1:]) in range(64, 97) and max(image.shape[1:]) <= 128
        assert matrix.dtype == torch.float32 and matrix.shape == (3, 3)


def test_teacher_and_student_views_map_onto_each_other(tiny_cfg, image_file):
    np.random.seed(0)
    mapper = _geometric_mapper(tiny_cfg)
    for _ in range(4):
        out = mapper(_record(image_file))
        a_t = out["teacher"]["transform_matrix"].double().numpy()
        a_s = out["student"]["transform_matrix"].double().numpy()
        teacher_box = bright_extent(_hwc(out["teacher"]["image"]))
        np.testing.assert_allclose(_map_box(a_t, BOX), teacher_box, atol=1.0)
        # teacher view -> student view with M = A_s @ inverse(A_t), as the model moves pseudo boxes
        student_box = _map_box(a_s @ np.linalg.inv(a_t), _map_box(a_t, BOX))
        np.testing.assert_allclose(student_box, bright_extent(_hwc(out["student"]["image"])), atol=1.5)


def test_teacher_and_student_views_differ(tiny_cfg, image_file):
    np.random.seed(1)
    mapper = UnlabeledDatasetMapper(tiny_cfg)
    outs = [mapper(_record(image_file)) for _ in range(3)]
    for out in outs:
        assert not torch.equal(out["teacher"]["transform_matrix"], out["student"]["transform_matrix"])
    sizes = {tuple(o[view]["image"].shape) for o in outs for view in ("teacher", "student")}
    assert len(sizes) > 1


def test_unlabeled_annotations_are_hidden_in_the_original_frame(tiny_cfg, image_file):
    annotations = [
        {"bbox": [24, 18, 36, 32], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2, "iscrowd": 0},
        {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 1},
    ]
    out = UnlabeledDatasetMapper(tiny_cfg)(_record(image_file, annotations=annotations))
    assert "annotations" not in out and "instances" not in out
    hidden = out["hidden_instances"]
    assert hidden.image_size == (H, W)
    np.testing.assert_allclose(hidden.gt_boxes.tensor.numpy(), [BOX])
    assert hidden.gt_classes.tolist() == [2]


def test_unreadable_unlabeled_images_are_skipped_counted_and_named(tiny_cfg, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    mapper = UnlabeledDatasetMapper(tiny_cfg)
    with captured_logs("soft_teacher.data.mappers", level=logging.WARNING) as records:
        assert mapper({"file_name": str(tmp_path / "missing.jpg"), "image_id": 1}) is None
        assert mapper({"file_name": str(broken), "image_id": 2}) is None
    assert mapper.num_skipped == 2
    text = "\n".join(r.getMessage() for r in records)
    assert "missing.jpg" in text and "broken.jpg" in text


def test_labeled_mapper_moves_boxes_with_pixels_and_gives_its_matrix(tiny_cfg, image_file):
    tiny_cfg.INPUT.PHOTOMETRIC_OPS = ("identity",)
    np.random.seed(2)
    mapper = LabeledDatasetMapper(tiny_cfg, is_train=True)
    annotations = [{"bbox": [24, 18, 36, 32], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 0}]
    for _ in range(3):
        out = mapper(_record(image_file, annotations=annotations))
        pixel_box = bright_extent(_hwc(out["image"]))
        np.testing.assert_allclose(out["instances"].gt_boxes.tensor[0].numpy(), pixel_box, atol=1.0)
        np.testing.assert_allclose(_map_box(out["transform_matrix"].double().numpy(), BOX), pixel_box, atol=1.0)
        assert out["instances"].gt_classes.tolist() == [1]


def test_missing_labeled_image_fails_with_its_file_name(tiny_cfg, tmp_path):
    path = str(tmp_path / "lost_image.jpg")
    with pytest.raises(OSError, match="lost_image.jpg"):
        LabeledDatasetMapper(tiny_cfg, is_train=True)(_record(path, annotations=[]))


def test_rgb_format_reads_channels_in_rgb_order(tiny_cfg, tmp_path):
    path = str(tmp_path / "blue.png")
    blue_bgr = np.zeros((H, W, 3), np.uint8)
    blue_bgr[..., 0] = 255
    cv2.imwrite(path, blue_bgr)
    tiny_cfg.INPUT.FORMAT = "RGB"
    out = UnlabeledDatasetMapper(tiny_cfg)({"file_name": path, "image_id": os.path.basename(path)})
    assert out["teacher"]["image"][2].float().mean() > 250 and out["teacher"]["image"][0].float().mean() < 5
