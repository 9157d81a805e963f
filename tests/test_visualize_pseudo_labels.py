"""soft_teacher.visualize and its command line tools/visualize_pseudo_labels.py: teacher and student views
with the pseudo boxes drawn in."""
import os

import cv2
import numpy as np
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import FastRCNNOutputLayers, StandardROIHeads
from detectron2.structures import Boxes, Instances, pairwise_iou

from helpers import make_tiny_cfg, run_tool
from soft_teacher import visualize
from soft_teacher.engine import load_config, load_model

SIZE = 128  # square test images; the hand-made teacher view is the original image
GRAY = 128
# Known teacher detections (teacher view): box, class, score and the verdict each must get.
# Class 1 boxes are regressed exactly (uncertainty 0), class 0 ones not at all (uncertainty ~ the jitter).
KNOWN = [
    ([8, 16, 40, 48], 1, 0.95, visualize.BOTH),
    ([72, 16, 120, 48], 0, 0.95, visualize.CLASSIFICATION_ONLY),
    ([8, 80, 40, 112], 1, 0.60, visualize.REGRESSION_ONLY),
    ([72, 80, 120, 112], 0, 0.60, visualize.REJECTED),
    ([44, 56, 84, 72], 0, 0.30, None),  # below SOFT_TEACHER.INITIAL_SCORE_THRESH: no pseudo box
]
KNOWN_BOXES = torch.tensor([box for box, *_ in KNOWN], dtype=torch.float32)


def known_detections(self, images, features, proposals, targets=None):
    """Stands in for the teacher's ROI heads: the KNOWN boxes on every image."""
    detections = []
    for image_size in images.image_sizes:
        result = Instances(image_size)
        result.pred_boxes = Boxes(KNOWN_BOXES.clone())
        result.scores = torch.tensor([score for _, _, score, _ in KNOWN])
        result.pred_classes = torch.tensor([cls for _, cls, _, _ in KNOWN])
        detections.append(result)
    return detections, {}


def class_1_exact_regression(self, predictions, proposals):
    """Stands in for the box regressor: class 1 copies snap back to their known box, class 0 stay jittered."""
    regressed = []
    for props in proposals:
        boxes = props.proposal_boxes.tensor.clone()
        nearest = pairwise_iou(Boxes(boxes), Boxes(KNOWN_BOXES)).argmax(dim=1)
        exact = props.gt_classes == 1
        boxes[exact] = KNOWN_BOXES[nearest[exact]]
        regressed.append(boxes)
    return regressed


@pytest.fixture
def known_teacher(monkeypatch):
    """Every detector's ROI heads give the KNOWN boxes (patched on the classes)."""
    monkeypatch.setattr(StandardROIHeads, "forward", known_detections)
    monkeypatch.setattr(FastRCNNOutputLayers, "predict_boxes_for_gt_classes", class_1_exact_regression)


def flip_mapper(dataset_dict):
    """Teacher view: the image as is. Student view: the image flipped left-right."""
    image = torch.full((3, SIZE, SIZE), GRAY, dtype=torch.uint8)
    flip = torch.tensor([[-1.0, 0.0, SIZE], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return {
        **dataset_dict,
        "teacher": {"image": image, "transform_matrix": torch.eye(3)},
        "student": {"image": image.flip(-1), "transform_matrix": flip},
    }


def rgb_at(picture_rgb, origin, x, y):
    return tuple(int(v) for v in picture_rgb[origin[1] + y, origin[0] + x])


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    cfg = make_tiny_cfg(num_classes=3)
    return build_model(cfg).eval(), cfg


def test_verdicts_follow_the_thresholds(tiny_cfg):
    labels = Instances((10, 10), scores=torch.tensor([0.95, 0.95, 0.6, 0.6]),
                       uncertainty=torch.tensor([0.01, 0.05, 0.01, 0.05]))
    expected = [visualize.BOTH, visualize.CLASSIFICATION_ONLY, visualize.REGRESSION_ONLY, visualize.REJECTED]
    assert visualize.verdicts(labels, tiny_cfg).tolist() == [visualize.VERDICTS.index(v) for v in expected]


def test_each_threshold_picks_the_boxes_of_its_own_loss(tiny_cfg):
    tiny_cfg.SOFT_TEACHER.RPN_PSEUDO_THRESH, tiny_cfg.SOFT_TEACHER.CLS_PSEUDO_THRESH = 0.9, 0.8
    labels = Instances((10, 10), scores=torch.tensor([0.95, 0.85, 0.6]), uncertainty=torch.tensor([0.05, 0.01, 0.01]))
    losses = visualize.supervised_losses(labels, tiny_cfg)
    assert {name: mask.tolist() for name, mask in losses.items()} == {
        "rpn": [True, False, False], "cls": [True, True, False], "reg": [False, True, True]}
    expected = [visualize.CLASSIFICATION_ONLY, visualize.BOTH, visualize.REGRESSION_ONLY]
    assert visualize.verdicts(labels, tiny_cfg).tolist() == [visualize.VERDICTS.index(v) for v in expected]


def test_picture_shows_known_boxes_in_both_views_in_their_verdict_colours(tiny_model, known_teacher, tmp_path):
    model, cfg = tiny_model
    dataset_dicts = [{"file_name": "img/a.jpg", "image_id": 1, "height": SIZE, "width": SIZE}]
    (picture,) = visualize.draw_pseudo_labels(model, cfg, dataset_dicts, str(tmp_path), mapper=flip_mapper)

    assert picture.path == os.path.join(str(tmp_path), "0000_a.png")
    expected = [verdict for *_, verdict in KNOWN if verdict is not None]
    assert [visualize.VERDICTS[i] for i in picture.teacher_labels.verdict.tolist()] == expected
    rgb = cv2.imread(picture.path)[:, :, ::-1]
    for (x1, y1, x2, y2), _, _, verdict in KNOWN:
        middle = (y1 + y2) // 2
        teacher_edges = [rgb_at(rgb, picture.teacher_origin, x, middle) for x in (x1, x2 - 1)]
        student_edges = [rgb_at(rgb, picture.student_origin, x, middle) for x in (SIZE - x2, SIZE - x1 - 1)]
        colour = verdict.color if verdict is not None else (GRAY,) * 3
        assert teacher_edges == [colour, colour] and student_edges == [colour, colour], (x1, y1, verdict)


def test_boxes_leaving_the_student_view_are_not_drawn_there(tiny_model, known_teacher, tmp_path):
    model, cfg = tiny_model

    def shift_right_mapper(dataset_dict):
        views = flip_mapper(dataset_dict)
        shift = torch.tensor([[1.0, 0.0, 70.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # the right-hand boxes leave
        views["student"] = {"image": views["teacher"]["image"], "transform_matrix": shift}
        return views

    dataset_dicts = [{"file_name": "b.png", "image_id": 2, "height": SIZE, "width": SIZE}]
    (picture,) = visualize.draw_pseudo_labels(model, cfg, dataset_dicts, str(tmp_path), mapper=shift_right_mapper)
    assert len(picture.teacher_labels) == 4
    assert picture.student_labels.gt_boxes.tensor.tolist() == [[78, 16, 110, 48], [78, 80, 110, 112]]


def test_training_views_of_a_real_image_are_drawn(tiny_model, known_teacher, tmp_path):
    model, cfg = tiny_model
    image_path = str(tmp_path / "photo.png")
    cv2.imwrite(image_path, np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    pictures = visualize.draw_pseudo_labels(model, cfg, visualize.image_dicts(image_path), str(tmp_path / "out"))
    assert len(pictures) == 1 and len(pictures[0].teacher_labels) == 4
    picture = cv2.imread(pictures[0].path)
    assert picture is not None and picture.shape[1] >= 2 * min(cfg.INPUT.MIN_SIZE_TRAIN)


def test_image_dicts_read_a_folder_in_name_order(tmp_path):
    for name in ("b.jpg", "a.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    dicts = visualize.image_dicts(str(tmp_path))
    assert [os.path.basename(d["file_name"]) for d in dicts] == ["a.png", "b.jpg"]
    assert len(visualize.image_dicts(str(tmp_path), num=1)) == 1


def test_unknown_input_says_what_is_accepted(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an image file, a folder of images, nor a registered"):
        visualize.image_dicts(str(tmp_path / "missing"))


def test_grid_picture_tiles_row_major_and_enlarges(tmp_path):
    paths = []
    for index, (height, width) in enumerate([(10, 20), (12, 8), (5, 5)]):
        path = str(tmp_path / f"{index}.png")
        cv2.imwrite(path, np.full((height, width, 3), index * 50, dtype=np.uint8))
        paths.append(path)
    out = str(tmp_path / "grid.png")
    visualize.grid_picture(paths, out, columns=2, scale=2)
    grid = cv2.imread(out)
    assert grid.shape == (2 * 2 * 12, 2 * 2 * 20, 3)  # 2 rows x 2 columns of 12 x 20 cells, doubled
    assert (grid[0, 0] == 0).all() and (grid[0, 2 * 20] == 50).all() and (grid[2 * 12, 0] == 100).all()
    assert (grid[-1, -1] == 255).all()  # the empty fourth cell is white


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny config file, its checkpoint and a folder of two images."""
    tmp_path = tmp_path_factory.mktemp("tiny_run")
    cfg = make_tiny_cfg(num_classes=3)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.dump())
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("tiny")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("x.png", "y.png"):
        cv2.imwrite(str(images / name), np.full((SIZE, SIZE, 3), 90, np.uint8))
    return str(config_file), str(tmp_path / "tiny.pth"), str(images)


def test_command_line_draws_each_image_of_a_folder(tiny_run, tmp_path):
    config_file, checkpoint, images = tiny_run
    output = str(tmp_path / "pictures")
    argv = ["--config-file", config_file, "--checkpoint", checkpoint, "--input", images, "--output", output,
            "--num", "2", "MODEL.DEVICE", "cpu"]
    completed = run_tool("visualize_pseudo_labels", argv)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert sorted(os.listdir(output)) == ["0000_x.png", "0001_y.png"]
    assert all(os.path.getsize(os.path.join(output, name)) > 0 for name in os.listdir(output))
    assert completed.stdout.count(" in the student view") == 2


def test_a_missing_checkpoint_is_reported(tiny_run, tmp_path):
    config_file, _, _ = tiny_run
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match=f"Checkpoint {missing} not found"):
        load_model(load_config(config_file), missing)


def test_a_missing_dataset_folder_from_the_config_is_reported(tiny_run, tmp_path):
    config_file, _, _ = tiny_run
    missing = str(tmp_path / "no_such_folder")
    load_config(config_file, ["DATASETS.CUSTOM_UNLABELED_FOLDERS", f"(('vis_test_missing_folder', '{missing}'),)"])
    with pytest.raises(FileNotFoundError, match=f"'{missing}' does not exist"):
        visualize.image_dicts("vis_test_missing_folder")


def test_an_unknown_config_key_is_reported_with_the_closest_one(tiny_run):
    config_file, _, _ = tiny_run
    with pytest.raises(ValueError, match="SOFT_TEACHER.CLS_PSEUDO_THRESH"):  # ConfigError, which the tool reports
        load_config(config_file, ["SOFT_TEACHER.CLS_PSEUDO_TRESH", "0.8"])
