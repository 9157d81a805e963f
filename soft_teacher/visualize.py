"""Pictures of a model's pseudo labels: the teacher view and the student view side by side.

For each image the two training views are built as training builds them (the unlabeled mapper:
weak teacher view, strong student view, each with its matrix from original pixels); the teacher
pseudo-labels the teacher view with the model's own code (detections with score >=
``SOFT_TEACHER.INITIAL_SCORE_THRESH``, box-jitter uncertainty) and the boxes move into the student
view with ``M = A_student @ inverse(A_teacher)``. Each box is coloured by the student losses it
supervises (:func:`supervised_losses`: the model's own split, ``split_pseudo_labels``):

- green: classification/RPN and regression;
- orange: classification/RPN only;
- blue: regression only;
- red: none (rejected).

Its label reads ``class score u<uncertainty>`` and, in brackets, those losses (``rpn``, ``cls``,
``reg``). Boxes that leave the student view are missing there. ``tools/visualize_pseudo_labels.py``
is the command line.
"""
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.structures import Instances

from soft_teacher.data import UnlabeledDatasetMapper
from soft_teacher.data.datasets import load_image_folder
from soft_teacher.modeling import instances_to_view, split_pseudo_labels, teacher_pseudo_labels, view_to_view_matrix

__all__ = ["BOTH", "CLASSIFICATION_ONLY", "PseudoLabelPicture", "REGRESSION_ONLY", "REJECTED",
           "VERDICTS", "Verdict", "draw_pseudo_labels", "grid_picture", "image_dicts", "pseudo_labelling_teacher",
           "supervised_losses", "verdicts"]


@dataclass(frozen=True)
class Verdict:
    """What a pseudo box passed, and the RGB colour it is drawn in."""

    name: str
    color: Tuple[int, int, int]


BOTH = Verdict("cls/RPN + reg", (0, 200, 0))
CLASSIFICATION_ONLY = Verdict("cls/RPN only", (255, 150, 0))
REGRESSION_ONLY = Verdict("reg only", (30, 120, 255))
REJECTED = Verdict("rejected", (230, 0, 40))
VERDICTS = (BOTH, CLASSIFICATION_ONLY, REGRESSION_ONLY, REJECTED)  # drawn last to first: BOTH ends on top
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
GAP = 8  # pixels between the two views


@dataclass
class PseudoLabelPicture:
    """One saved picture and the pseudo boxes it shows.

    Attributes:
        path: the PNG written.
        teacher_labels: candidate pseudo boxes in the teacher view frame: ``gt_boxes``,
            ``gt_classes``, ``scores``, ``uncertainty`` and ``verdict`` (int64 index into
            :data:`VERDICTS`).
        student_labels: the same boxes moved to the student view frame, without those
            that left it (same fields).
        teacher_origin, student_origin: ``(x, y)`` of each view's top-left pixel in the picture.
    """

    path: str
    teacher_labels: Instances
    student_labels: Instances
    teacher_origin: Tuple[int, int]
    student_origin: Tuple[int, int]


def pseudo_labelling_teacher(model: torch.nn.Module) -> torch.nn.Module:
    """The detector that pseudo-labels: a SoftTeacher's ``teacher``, or a plain detector itself."""
    return getattr(model, "teacher", model)


def supervised_losses(pseudo_labels: Instances, cfg) -> Dict[str, torch.Tensor]:
    """``{"rpn", "cls", "reg"}``: ``(N,)`` bool, which candidates supervise each student loss: the model's
    :func:`~soft_teacher.modeling.split_pseudo_labels` with ``cfg.SOFT_TEACHER``'s thresholds."""
    st = cfg.SOFT_TEACHER
    return split_pseudo_labels(pseudo_labels, st.RPN_PSEUDO_THRESH, st.CLS_PSEUDO_THRESH, st.REG_UNCERTAINTY_THRESH)


def verdicts(pseudo_labels: Instances, cfg) -> torch.Tensor:
    """``(N,)`` int64 index into :data:`VERDICTS` of each candidate, from its :func:`supervised_losses`."""
    losses = supervised_losses(pseudo_labels, cfg)
    passes_score, passes_reg = losses["rpn"] | losses["cls"], losses["reg"]
    index = torch.full_like(pseudo_labels.scores, VERDICTS.index(REJECTED), dtype=torch.int64)
    index[passes_reg] = VERDICTS.index(REGRESSION_ONLY)
    index[passes_score] = VERDICTS.index(CLASSIFICATION_ONLY)
    index[passes_score & passes_reg] = VERDICTS.index(BOTH)
    return index


def draw_pseudo_labels(
    model: torch.nn.Module,
    cfg,
    dataset_dicts: Sequence[dict],
    output_dir: str,
    mapper: Optional[Callable[[dict], dict]] = None,
) -> List[PseudoLabelPicture]:
    """Pseudo-label each image and save ``<index>_<file stem>.png`` pictures under ``output_dir``.

    Args:
        model: a SoftTeacher model (its ``teacher`` pseudo-labels) or a plain detector; in eval mode.
        cfg: the config it was built from (thresholds, class names, input format).
        dataset_dicts: Detectron2 dataset dicts of the images (``file_name``; ``height``, ``width`` optional).
        mapper: turns a dataset dict into an unlabeled dict with ``"teacher"`` and ``"student"``
            views (``image`` uint8 (3, H, W) in ``cfg.INPUT.FORMAT``, ``transform_matrix`` (3, 3));
            defaults to the training mapper, ``UnlabeledDatasetMapper(cfg, is_train=True)``.

    Returns:
        One :class:`PseudoLabelPicture` per image the mapper could read (it skips unreadable ones).
    """
    if mapper is None:
        mapper = UnlabeledDatasetMapper(cfg, is_train=True)
    teacher = pseudo_labelling_teacher(model)
    class_names = _class_names(cfg)
    st = cfg.SOFT_TEACHER
    os.makedirs(output_dir, exist_ok=True)
    pictures = []
    for index, dataset_dict in enumerate(dataset_dicts):
        views = mapper(dataset_dict)
        if views is None:
            continue  # unreadable: the mapper logged which file and why
        teacher_view, student_view = views["teacher"], views["student"]
        output = teacher_pseudo_labels(
            teacher, [teacher_view], st.INITIAL_SCORE_THRESH, st.JITTER_TIMES, st.JITTER_SCALE
        )
        teacher_labels = output.pseudo_labels[0].to("cpu")
        teacher_labels.verdict = verdicts(teacher_labels, cfg)
        student_size = tuple(student_view["image"].shape[-2:])
        matrix = view_to_view_matrix(teacher_view["transform_matrix"], student_view["transform_matrix"])
        student_labels = instances_to_view(teacher_labels, matrix.cpu(), student_size)

        teacher_image = _draw_view(_to_rgb(teacher_view["image"], cfg), teacher_labels, class_names, cfg)
        student_image = _draw_view(_to_rgb(student_view["image"], cfg), student_labels, class_names, cfg)
        titles = (f"teacher (weak): {len(teacher_labels)} boxes", f"student (strong): {len(student_labels)} boxes")
        picture, teacher_origin, student_origin = _side_by_side(teacher_image, student_image, titles, cfg)
        stem = os.path.splitext(os.path.basename(dataset_dict["file_name"]))[0]
        path = os.path.join(output_dir, f"{index:04d}_{stem}.png")
        if not cv2.imwrite(path, picture[:, :, ::-1]):
            raise OSError(f"Could not write {path}; check that {output_dir} is writable.")
        pictures.append(PseudoLabelPicture(path, teacher_labels, student_labels, teacher_origin, student_origin))
    return pictures


def _class_names(cfg) -> Optional[List[str]]:
    for name in tuple(cfg.DATASETS.TRAIN_UNLABELED) + tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST):
        names = MetadataCatalog.get(name).get("thing_classes")
        if names:
            return list(names)
    return None


def _to_rgb(image: torch.Tensor, cfg) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB copy of a ``(3, H, W)`` view in ``cfg.INPUT.FORMAT``."""
    rgb = convert_image_to_rgb(image.permute(1, 2, 0).cpu().numpy(), cfg.INPUT.FORMAT)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _text_style(image: np.ndarray) -> Tuple[float, int]:
    """Font scale and line thickness for an image, growing with its size."""
    side = max(image.shape[:2])
    return max(0.3, side / 1600), max(1, round(side / 400))


def _draw_view(image: np.ndarray, labels: Instances, class_names: Optional[List[str]], cfg) -> np.ndarray:
    """Draw boxes (rejected first, so the boxes that train end on top) with their labels."""
    font_scale, thickness = _text_style(image)
    supervised = supervised_losses(labels, cfg)
    order = sorted(range(len(labels)), key=lambda i: -int(labels.verdict[i]))
    for i in order:
        x1, y1, x2, y2 = (int(round(float(v))) for v in labels.gt_boxes.tensor[i])
        verdict = VERDICTS[int(labels.verdict[i])]
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), verdict.color, thickness)
        score, uncertainty = float(labels.scores[i]), float(labels.uncertainty[i])
        losses = [name for name, passed in supervised.items() if passed[i]]
        class_id = int(labels.gt_classes[i])
        name = class_names[class_id] if class_names and class_id < len(class_names) else str(class_id)
        text = f"{name} {score:.2f} u{uncertainty:.3f}" + (f" [{' '.join(losses)}]" if losses else "")
        _draw_label(image, text, (x1, y1), verdict.color, font_scale)
    return image


def _draw_label(image: np.ndarray, text: str, corner: Tuple[int, int], color, font_scale: float) -> None:
    """Text on a filled box of ``color`` just above ``corner`` (below it at the top border)."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    x, y = max(0, min(corner[0], image.shape[1] - width)), corner[1]  # shifted left to stay in the view
    top = y - height - baseline - 1 if y - height - baseline - 1 >= 0 else y + 1
    cv2.rectangle(image, (x, top), (x + width, top + height + baseline), color, cv2.FILLED)
    cv2.putText(image, text, (x, top + height), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT, 1, cv2.LINE_AA)


def _side_by_side(
    teacher_image: np.ndarray, student_image: np.ndarray, titles: Tuple[str, str], cfg
) -> Tuple[np.ndarray, Tuple[int, int], Tuple[int, int]]:
    """Titles above, the two views side by side, the colour legend below."""
    font_scale, _ = _text_style(max(teacher_image, student_image, key=lambda im: max(im.shape[:2])))
    line_height = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][1] * 2 + 4
    st = cfg.SOFT_TEACHER
    score, uncertainty = min(st.CLS_PSEUDO_THRESH, st.RPN_PSEUDO_THRESH), st.REG_UNCERTAINTY_THRESH
    legend = [
        (BOTH, f"{BOTH.name}: score >= {score:g}, uncertainty < {uncertainty:g}"),
        (CLASSIFICATION_ONLY, f"{CLASSIFICATION_ONLY.name}: score >= {score:g}, uncertainty >= {uncertainty:g}"),
        (REGRESSION_ONLY, f"{REGRESSION_ONLY.name}: score < {score:g}, uncertainty < {uncertainty:g}"),
        (REJECTED, f"{REJECTED.name}: score < {score:g}, uncertainty >= {uncertainty:g}"),
    ]
    (t_h, t_w), (s_h, s_w) = teacher_image.shape[:2], student_image.shape[:2]
    legend_width = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] for _, text in legend)
    width = max(t_w + GAP + s_w, legend_width + line_height + 8)
    height = line_height + max(t_h, s_h) + line_height * len(legend) + 4
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    teacher_origin, student_origin = (0, line_height), (t_w + GAP, line_height)
    for (x, y), image, title in zip((teacher_origin, student_origin), (teacher_image, student_image), titles):
        canvas[y: y + image.shape[0], x: x + image.shape[1]] = image
        cv2.putText(canvas, title, (x + 2, y - 6), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT, 1, cv2.LINE_AA)
    y = line_height + max(t_h, s_h) + 2
    for verdict, text in legend:
        swatch = line_height - 6
        cv2.rectangle(canvas, (4, y + 3), (4 + swatch, y + 3 + swatch), verdict.color, cv2.FILLED)
        cv2.putText(canvas, text, (8 + swatch, y + line_height - 6),
                    cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT, 1, cv2.LINE_AA)
        y += line_height
    return canvas, teacher_origin, student_origin


def image_dicts(source: str, num: Optional[int] = None) -> List[dict]:
    """Dataset dicts of an image file, a folder of images, or a registered dataset's images.

    A folder is listed as an unlabeled image folder is (subfolders included, sorted).

    Raises:
        FileNotFoundError: ``source`` is none of these.
        ValueError: ``source`` is a folder without images.
    """
    if os.path.isfile(source):
        files = [source]
    elif os.path.isdir(source):
        return load_image_folder(source, os.path.basename(os.path.normpath(source)))[:num]
    elif source in DatasetCatalog.list():
        return list(DatasetCatalog.get(source))[:num]
    else:
        raise FileNotFoundError(
            f"--input {source!r} is neither an image file, a folder of images, nor a registered dataset "
            "name (e.g. coco_2017_train_10pct_1_unlabeled or shapes_train_10pct_1_unlabeled)."
        )
    return [{"file_name": path, "image_id": index} for index, path in enumerate(files[:num])]


def grid_picture(paths: Sequence[str], output_png: str, columns: int = 2, scale: int = 2) -> None:
    """Tile the PNGs at ``paths`` (row-major, white padding) into one picture, enlarged ``scale`` times."""
    images = [cv2.imread(path) for path in paths]
    if not images:
        raise ValueError("No pictures to tile.")
    cell_h, cell_w = max(im.shape[0] for im in images), max(im.shape[1] for im in images)
    rows = -(-len(images) // columns)
    grid = np.full((rows * cell_h, min(columns, len(images)) * cell_w, 3), 255, dtype=np.uint8)
    for index, image in enumerate(images):
        y, x = (index // columns) * cell_h, (index % columns) * cell_w
        grid[y:y + image.shape[0], x:x + image.shape[1]] = image
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    if not cv2.imwrite(output_png, grid):
        raise OSError(f"Could not write {output_png}; check that its folder is writable.")
