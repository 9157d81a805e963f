#!/usr/bin/env python
"""Pictures of a checkpoint's pseudo labels: teacher view and student view side by side.

For each unlabeled image the tool builds the two training views exactly as training
does (the unlabeled mapper: weak teacher view, strong student view, each with its
matrix from original pixels), lets the teacher pseudo-label the teacher view with the
project's own code (detections with score >= ``SOFT_TEACHER.INITIAL_SCORE_THRESH``,
box-jitter uncertainty) and moves the boxes into the student view with
``M = A_student @ inverse(A_teacher)``. Each box is coloured by what it passed:

- green: score >= the classification/RPN threshold and uncertainty < the regression threshold;
- orange: the classification/RPN threshold only (supervises classification, not regression);
- blue: the regression threshold only (supervises box regression only);
- red: neither (rejected).

Its label reads ``class score u<uncertainty>`` and, in brackets, the student losses it
supervises (``rpn``, ``cls``, ``reg``). Boxes that leave the student view are missing there.

Usage::

    python tools/visualize_pseudo_labels.py --config-file configs/coco/soft_teacher_R50_FPN_10pct.yaml \\
        --checkpoint output/coco/soft_teacher_R50_FPN_10pct_fold1/model_final.pth \\
        --input coco_2017_train_10pct_1_unlabeled --output output/pseudo_labels --num 8
"""
import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from soft_teacher.data import UnlabeledDatasetMapper, register_custom_datasets
from soft_teacher.engine import SoftTeacherCheckpointer, load_config
from soft_teacher.modeling import instances_to_view, teacher_pseudo_labels, view_to_view_matrix

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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


def verdicts(pseudo_labels: Instances, cfg) -> torch.Tensor:
    """``(N,)`` int64 index into :data:`VERDICTS` of each candidate, from ``cfg.SOFT_TEACHER``'s thresholds."""
    st = cfg.SOFT_TEACHER
    passes_score = pseudo_labels.scores >= min(st.CLS_PSEUDO_THRESH, st.RPN_PSEUDO_THRESH)
    passes_reg = pseudo_labels.uncertainty < st.REG_UNCERTAINTY_THRESH
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
    st = cfg.SOFT_TEACHER
    order = sorted(range(len(labels)), key=lambda i: -int(labels.verdict[i]))
    for i in order:
        x1, y1, x2, y2 = (int(round(float(v))) for v in labels.gt_boxes.tensor[i])
        verdict = VERDICTS[int(labels.verdict[i])]
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), verdict.color, thickness)
        score, uncertainty = float(labels.scores[i]), float(labels.uncertainty[i])
        losses = [
            name
            for name, passed in (
                ("rpn", score >= st.RPN_PSEUDO_THRESH),
                ("cls", score >= st.CLS_PSEUDO_THRESH),
                ("reg", uncertainty < st.REG_UNCERTAINTY_THRESH),
            )
            if passed
        ]
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

    Raises:
        FileNotFoundError: ``source`` is none of these, or a folder without images.
    """
    if os.path.isfile(source):
        files = [source]
    elif os.path.isdir(source):
        files = sorted(
            os.path.join(source, name) for name in os.listdir(source) if name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the folder {source}.")
    elif source in DatasetCatalog.list():
        return list(DatasetCatalog.get(source))[:num]
    else:
        raise FileNotFoundError(
            f"--input {source!r} is neither an image file, a folder of images, nor a registered dataset "
            "name (e.g. coco_2017_train_10pct_1_unlabeled or shapes_train_10pct_1_unlabeled)."
        )
    return [{"file_name": path, "image_id": index} for index, path in enumerate(files[:num])]


def load_model(cfg, checkpoint: str) -> torch.nn.Module:
    """Build the model of ``cfg``, load ``checkpoint`` into it, and put it in eval mode."""
    if "://" not in checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"Checkpoint {checkpoint} not found. Pass a file that train_net.py wrote to OUTPUT_DIR "
            "(e.g. model_final.pth) or a Detectron2 model-zoo URL."
        )
    model = build_model(cfg)
    SoftTeacherCheckpointer(model).load(checkpoint)
    return model.eval()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the config the checkpoint trained with")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint (.pth/.pkl) or model-zoo URL")
    parser.add_argument("--input", required=True, help="an image, a folder of images, or a registered dataset name")
    parser.add_argument("--output", required=True, help="folder for the pictures")
    parser.add_argument("--num", type=int, default=8, help="pictures to draw, from the first images (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random view augmentations")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logger(name="soft_teacher")
    try:
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        register_custom_datasets(cfg)
        dataset_dicts = image_dicts(args.input, args.num)
        model = load_model(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError) as err:  # ValueError includes ConfigError; the message says what to fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    seed_all_rng(args.seed)
    for picture in draw_pseudo_labels(model, cfg, dataset_dicts, args.output):
        in_view = len(picture.student_labels)
        print(f"{picture.path}: {len(picture.teacher_labels)} pseudo boxes, {in_view} in the student view")
    return 0


if __name__ == "__main__":
    sys.exit(main())
