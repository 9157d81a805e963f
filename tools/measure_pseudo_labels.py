#!/usr/bin/env python
"""How good a checkpoint's pseudo labels are, on unlabeled images that carry hidden annotations.

For a random sample of a registered dataset's images, the teacher view is built as training
builds it (``UnlabeledDatasetMapper``), pseudo-labelled with the config's
``SOFT_TEACHER.INITIAL_SCORE_THRESH`` / ``JITTER_TIMES`` / ``JITTER_SCALE``, and compared with
the image's annotations moved into that view. Printed (and written with ``--output`` as JSON):

- per score threshold (those of 0.5 ... 0.95 not below ``INITIAL_SCORE_THRESH``): pseudo boxes
  per image, precision and recall (greedy one-to-one matching at IoU 0.5, as training's
  ``pseudo/precision_at_T``), and the share of the boxes false for each cause: a duplicate of a
  matched box, on an object of another class, mislocated (IoU 0.1-0.5), on background;
- the most frequent wrong-class pairs (annotated class, pseudo class) at ``SOFT_TEACHER.CLS_PSEUDO_THRESH``;
- percentiles of the candidates' box-jitter uncertainty;
- per uncertainty threshold: the candidates below it, their mean IoU with the best annotation
  of their class and the share with IoU >= 0.75 (does low uncertainty single out well-localised boxes?);
- per geometric op of the student view (all four, those the config leaves out marked), per class: the
  share of annotated objects whose box, moved with the image as a pseudo box is, the detector's box
  head still gives their class, gives background, or gives another class (which). A pseudo label is
  made on the teacher view; an op that changes what an object looks like as a class (on the shapes
  set, shear makes circles elliptic) teaches the student a wrong class.

A Soft Teacher checkpoint is measured through its teacher, a plain detector's as it is. The measurement is
:func:`measure_pseudo_labels` (matching as in training, :mod:`soft_teacher.diagnostics`), over an image sample
(:func:`sample_dataset_dicts`), with whether the student view keeps each object's class (:func:`class_under_ops`)
and the printed tables (:func:`format_figures`, :func:`format_class_under_ops`).

Usage::

    python tools/measure_pseudo_labels.py --config-file configs/shapes/supervised_R18_FPN_5pct.yaml \\
        --checkpoint output/shapes/supervised_R18_FPN_5pct/model_final.pth \\
        --dataset shapes_train_5pct_1_unlabeled --num 150 --output pseudo_label_quality.json
"""
import argparse
import json
import os
import sys
from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

import soft_teacher  # noqa: F401,I001  (first: quiets Detectron2's import)

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import BoxMode, Boxes, Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from soft_teacher.config import GEOMETRIC_OPS
from soft_teacher.data import UnlabeledDatasetMapper
from soft_teacher.data.mappers import read_image, strong_affine
from soft_teacher.engine import load_config, load_detector
from soft_teacher.modeling.box_head import box_head_predictions
from soft_teacher.diagnostics import (FALSE_POSITIVE_CAUSES, SCORE_GRID, match_pseudo_labels,
                                      same_class_iou)
from soft_teacher.modeling import instances_to_view, teacher_pseudo_labels

__all__ = ["MEASURE_SCORE_GRID", "box_head_classifier", "class_under_ops", "format_class_under_ops", "format_figures",
           "measure_pseudo_labels", "pseudo_label_figures", "require_hidden_annotations", "sample_dataset_dicts"]

MEASURE_SCORE_GRID = SCORE_GRID + (0.95,)
MEASURE_PERCENTILES = (10, 25, 50, 75, 90)
UNCERTAINTY_GRID = (0.02, 0.03, 0.04, 0.05, None)  # None: every candidate
WELL_LOCALISED_IOU = 0.75


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return numerator / denominator if denominator else None


def require_hidden_annotations(dataset_dicts: Sequence[dict], dataset_name: str = "The dataset") -> None:
    """Raise ``ValueError`` unless every dict carries ``annotations`` to measure pseudo labels against."""
    missing = sum("annotations" not in d for d in dataset_dicts)
    if missing:
        raise ValueError(
            f"{dataset_name} has no hidden annotations to measure against ({missing} of {len(dataset_dicts)} "
            "images have no 'annotations'): use the unlabeled split of an annotated set, e.g. "
            "shapes_train_5pct_1_unlabeled or coco_2017_train_10pct_1_unlabeled."
        )


def pseudo_label_figures(
    candidates: Sequence[Instances],
    annotations: Sequence[Instances],
    initial_score_thresh: float = 0.0,
    cls_thresh: Optional[float] = None,
) -> Dict:
    """JSON-ready quality figures of candidate pseudo boxes against annotations in the same frame.

    ``score_thresholds`` gives, per threshold of :data:`MEASURE_SCORE_GRID` not below
    ``initial_score_thresh``, the candidates' precision and recall, and ``false_positives``, how many
    of the false ones have each cause of :data:`FALSE_POSITIVE_CAUSES`. ``confusions`` lists the
    ``wrong_class`` boxes scoring >= ``cls_thresh`` (default ``initial_score_thresh``) by pair of
    annotated and pseudo class, most frequent first. ``uncertainty_thresholds`` gives,
    per threshold ``U`` of :data:`UNCERTAINTY_GRID`, the candidates with uncertainty < ``U``, their
    mean IoU with the best same-class annotation (matched or not) and the share of them at or above
    :data:`WELL_LOCALISED_IOU`: whether low uncertainty singles out well-localised boxes. A ratio
    without a denominator is ``None``.
    """
    cpu = [c.to("cpu") for c in candidates]
    anns = [a.to("cpu") for a in annotations]
    num_images, num_annotations = len(cpu), sum(len(a) for a in anns)
    empty = torch.zeros(0)
    scores = torch.cat([c.scores.float() for c in cpu]) if cpu else empty
    uncertainty = torch.cat([c.uncertainty.float() for c in cpu]) if cpu else empty
    matched, causes, annotated_classes = match_pseudo_labels(cpu, anns)
    pseudo_classes = torch.cat([c.gt_classes for c in cpu]) if cpu else empty.long()
    best_iou = torch.cat([
        same_class_iou(c, a).max(dim=1).values if len(a) else torch.zeros(len(c)) for c, a in zip(cpu, anns)
    ]) if cpu else empty

    score_rows = []
    for t in MEASURE_SCORE_GRID:
        if t < initial_score_thresh:
            continue
        above = scores >= t
        boxes, true_positives = int(above.sum()), int((matched & above).sum())
        score_rows.append({
            "threshold": t,
            "boxes": boxes,
            "boxes_per_image": _ratio(boxes, num_images),
            "true_positives": true_positives,
            "precision": _ratio(true_positives, boxes),
            "recall": _ratio(true_positives, num_annotations),
            "false_positives": {cause: int((above & (causes == index)).sum())
                                for index, cause in enumerate(FALSE_POSITIVE_CAUSES)},
        })
    confusion_thresh = initial_score_thresh if cls_thresh is None else cls_thresh
    confused = (scores >= confusion_thresh) & (causes == FALSE_POSITIVE_CAUSES.index("wrong_class"))
    pairs = Counter(zip(annotated_classes[confused].tolist(), pseudo_classes[confused].tolist()))
    confusions = [{"annotated_class": a, "pseudo_class": p, "boxes": n} for (a, p), n in pairs.most_common()]
    uncertainty_rows = []
    for u in UNCERTAINTY_GRID:
        below = uncertainty < u if u is not None else torch.ones_like(uncertainty, dtype=torch.bool)
        count = int(below.sum())
        uncertainty_rows.append({
            "threshold": u,
            "candidates": count,
            "mean_iou": float(best_iou[below].mean()) if count else None,
            "well_localised_share": _ratio(int((best_iou[below] >= WELL_LOCALISED_IOU).sum()), count),
        })
    values = uncertainty.double().numpy()
    percentiles = {f"p{p}": float(np.percentile(values, p)) if len(values) else None for p in MEASURE_PERCENTILES}
    return {
        "images": num_images,
        "annotations": num_annotations,
        "candidates": len(scores),
        "initial_score_thresh": initial_score_thresh,
        "score_thresholds": score_rows,
        "confusion_thresh": confusion_thresh,
        "confusions": confusions,
        "uncertainty_percentiles": percentiles,
        "uncertainty_thresholds": uncertainty_rows,
    }


@torch.no_grad()
def measure_pseudo_labels(
    model: torch.nn.Module,
    mapper: Callable[[dict], Optional[dict]],
    dataset_dicts: Sequence[dict],
    score_thresh: float,
    jitter_times: int,
    jitter_scale: float,
    cls_thresh: Optional[float] = None,
) -> Dict:
    """:func:`pseudo_label_figures` of a detector's pseudo labels on annotated images, as training makes them.

    ``mapper`` is the training one (``UnlabeledDatasetMapper(cfg, True)``), so each image gets its
    teacher view, pseudo-labelled alone, and its ``hidden_instances`` moved into that view; an image it
    cannot read counts in ``skipped_images``. ``model`` is a plain detector in eval mode or a
    teacher-student model, whose teacher labels.
    """
    require_hidden_annotations(dataset_dicts)
    teacher = getattr(model, "teacher", model)
    candidates, annotations, skipped = [], [], 0
    for dataset_dict in dataset_dicts:
        views = mapper(dataset_dict)
        if views is None:
            skipped += 1
            continue
        teacher_view = views["teacher"]
        labels = teacher_pseudo_labels(teacher, [teacher_view], score_thresh, jitter_times, jitter_scale)
        labels = labels.pseudo_labels[0].to("cpu")
        matrix = torch.as_tensor(teacher_view["transform_matrix"]).cpu()
        annotations.append(instances_to_view(views["hidden_instances"].to("cpu"), matrix, labels.image_size))
        candidates.append(labels)
    figures = pseudo_label_figures(candidates, annotations, score_thresh, cls_thresh)
    figures["skipped_images"] = skipped
    return figures


def sample_dataset_dicts(name: str, num: int, seed: int) -> List[dict]:
    """``num`` dicts (all, if fewer) of the registered dataset ``name``, drawn without replacement.

    Raises:
        FileNotFoundError: ``name`` is not registered.
        ValueError: its dicts have no annotations to measure against.
    """
    if name not in DatasetCatalog.list():
        raise FileNotFoundError(
            f"--dataset {name!r} is not a registered dataset: pass a name such as shapes_train_5pct_1_unlabeled, "
            "or declare your own with DATASETS.CUSTOM_COCO."
        )
    dicts = DatasetCatalog.get(name)
    indices = np.random.RandomState(seed).choice(len(dicts), min(num, len(dicts)), replace=False)
    sample = [dicts[i] for i in indices]
    require_hidden_annotations(sample, f"Dataset {name!r}")
    return sample


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_figures(figures: dict, class_names: Sequence[str], most_confused: int = 6) -> str:
    """The figures of ``measure_pseudo_labels`` as readable tables.

    The score table splits each row's boxes into the true share (precision) and the share of each
    false-positive cause; then come the ``most_confused`` most frequent wrong-class pairs.
    """
    causes = [cause.replace("_", " ") for cause in FALSE_POSITIVE_CAUSES]
    lines = [
        f"{figures['images']} images ({figures['skipped_images']} unreadable skipped), "
        f"{figures['annotations']} annotations, {figures['candidates']} candidate pseudo boxes "
        f"(score >= {figures['initial_score_thresh']:g})",
        "",
        f"{'score >=':>9} {'boxes/image':>12} {'precision':>10} {'recall':>8}   share of boxes, false: "
        + " ".join(f"{cause:>11}" for cause in causes),
    ]
    for row in figures["score_thresholds"]:
        shares = [row["false_positives"][cause] / row["boxes"] if row["boxes"] else None
                  for cause in FALSE_POSITIVE_CAUSES]
        lines.append(f"{row['threshold']:>9g} {_fmt(row['boxes_per_image'], 2):>12} "
                     f"{_fmt(row['precision']):>10} {_fmt(row['recall']):>8}   {'':23}"
                     + " ".join(f"{_fmt(share):>11}" for share in shares))
    confusions = figures["confusions"][:most_confused]
    pairs = ", ".join(f"{class_names[c['annotated_class']]} named {class_names[c['pseudo_class']]} {c['boxes']}"
                      for c in confusions)
    lines += ["", f"wrong-class pseudo boxes at score >= {figures['confusion_thresh']:g}, most frequent: "
              + (pairs or "none")]
    percentiles = figures["uncertainty_percentiles"]
    lines += ["", "uncertainty percentiles: " + "  ".join(f"{k} {_fmt(v, 4)}" for k, v in percentiles.items()), ""]
    lines.append(f"{'uncertainty <':>13} {'candidates':>10} {'mean IoU':>9} {'IoU >= 0.75':>12}")
    for row in figures["uncertainty_thresholds"]:
        threshold = "all" if row["threshold"] is None else f"{row['threshold']:g}"
        lines.append(f"{threshold:>13} {row['candidates']:>10} {_fmt(row['mean_iou']):>9} "
                     f"{_fmt(row['well_localised_share']):>12}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the student view's classes

Classifier = Callable[[np.ndarray, np.ndarray], np.ndarray]


def box_head_classifier(detector: torch.nn.Module) -> Classifier:
    """``classify(image, boxes)``: the class index (``K`` = background) the detector's box head gives each
    ``(N, 4)`` XYXY box of an ``(H, W, C)`` image in the detector's input format (boxes in its pixel frame)."""
    def classify(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
            images = detector.preprocess_image([{"image": tensor}])
            features = detector.backbone(images.tensor)
            box_list = [Boxes(torch.as_tensor(boxes, dtype=torch.float32, device=images.tensor.device))]
            logits, _ = box_head_predictions(detector.roi_heads, features, box_list)
        return logits.argmax(dim=1).cpu().numpy()
    return classify


def class_under_ops(classify: Classifier, cfg, dataset_dicts: Sequence[dict], num_classes: int,
                    ops: Sequence[str] = GEOMETRIC_OPS) -> Dict[str, np.ndarray]:
    """Does each geometric op of the student view keep an object's class? ``{op: (K, K + 1) counts}``.

    Each image is resized as at test time (``INPUT.MIN_SIZE_TEST``); for ``"none"`` and each op of
    ``ops`` (drawn with the config's ``INPUT.STRONG_*`` magnitudes, :func:`strong_affine`), the annotated
    boxes move with the image as pseudo boxes move into the student view (the box around the moved
    corners, clipped to the image; objects moved out are left out), and ``classify`` names each box.
    Row: the annotated class; column: the class given (``K``: background). Draws from ``np.random``.

    Raises:
        ValueError: an annotation's class is not one of the model's ``num_classes``.
    """
    require_hidden_annotations(dataset_dicts)
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    counts = {op: np.zeros((num_classes, num_classes + 1), dtype=np.int64) for op in ("none", *ops)}
    augmentations = {op: strong_affine(cfg, (op,)) for op in ops}
    for dataset_dict in dataset_dicts:
        if not dataset_dict["annotations"]:
            continue
        image = read_image(dataset_dict["file_name"], cfg.INPUT.FORMAT)
        resized = resize.get_transform(image)
        image = resized.apply_image(image)
        boxes = resized.apply_box(np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                                            for a in dataset_dict["annotations"]], dtype=np.float64))
        classes = np.array([a["category_id"] for a in dataset_dict["annotations"]])
        if classes.max() >= num_classes:
            raise ValueError(f"{dataset_dict['file_name']} has an object of class {classes.max()}, but the model "
                             f"has {num_classes} classes: measure on a dataset of the model's classes.")
        height, width = image.shape[:2]
        for op in counts:
            view, moved = image, boxes
            if op != "none":
                transform = augmentations[op].get_transform(image)
                view, moved = transform.apply_image(image), transform.apply_box(boxes)
            moved = np.clip(moved, 0, [width, height, width, height])
            inside = (moved[:, 2] - moved[:, 0] >= 1) & (moved[:, 3] - moved[:, 1] >= 1)
            if inside.any():
                np.add.at(counts[op], (classes[inside], classify(view, moved[inside])), 1)
    return counts


def format_class_under_ops(counts: Dict[str, np.ndarray], class_names: Sequence[str],
                           used_ops: Sequence[str]) -> str:
    """:func:`class_under_ops` as a table: per op and class, the share named as annotated, as background,
    and the other class most often given."""
    lines = [f"{'op':15} {'class':15} {'objects':>8} {'same':>6} {'bg':>6}  most often instead"]
    for op, matrix in counts.items():
        label = op if op == "none" or op in used_ops else f"{op} (unused)"
        for k, name in enumerate(class_names):
            row = matrix[k]
            total = row.sum()
            if not total:
                continue
            others = [(row[j], class_names[j]) for j in range(len(class_names)) if j != k]
            share, other = max(others, default=(0, "-"))
            lines.append(f"{label:15} {name:15} {total:>8} {row[k] / total:>6.2f} {row[-1] / total:>6.2f}  "
                         + (f"{other} {share / total:.2f}" if share else "-"))
    return "\n".join(lines)

# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the config the checkpoint trained with")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint (.pth/.pkl) or model-zoo URL")
    parser.add_argument("--dataset", required=True,
                        help="registered dataset whose images carry (hidden) annotations, e.g. an unlabeled split")
    parser.add_argument("--num", type=int, default=150, help="images to sample (default 150; all if fewer)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image sample and the view augmentations")
    parser.add_argument("--output", metavar="FILE", help="also write every figure to this JSON file")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logger(name="soft_teacher")
    torch.set_num_threads(args.num_threads)
    try:
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        dataset_dicts = sample_dataset_dicts(args.dataset, args.num, args.seed)
        model = load_detector(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError) as err:  # ValueError includes ConfigError; the message says what to fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    seed_all_rng(args.seed)
    st = cfg.SOFT_TEACHER
    figures = measure_pseudo_labels(model, UnlabeledDatasetMapper(cfg, is_train=True), dataset_dicts,
                                    st.INITIAL_SCORE_THRESH, st.JITTER_TIMES, st.JITTER_SCALE, st.CLS_PSEUDO_THRESH)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    class_names = MetadataCatalog.get(args.dataset).get("thing_classes", None)
    if class_names is None or len(class_names) != num_classes:  # the model's classes are what it names
        class_names = [f"class {k}" for k in range(num_classes)]
    print(f"Pseudo labels of {args.checkpoint} on {args.dataset}:")
    print(format_figures(figures, class_names))
    try:
        counts = class_under_ops(box_head_classifier(model), cfg, dataset_dicts, num_classes)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\nClass the box head gives each annotated object after each geometric op of the student view:")
    print(format_class_under_ops(counts, class_names, cfg.INPUT.STRONG_GEOMETRIC_OPS))
    if args.output:
        report = {"config_file": args.config_file, "checkpoint": args.checkpoint, "dataset": args.dataset,
                  "num": args.num, "seed": args.seed, "jitter_times": st.JITTER_TIMES,
                  "jitter_scale": st.JITTER_SCALE, **figures,
                  "class_under_ops": {"classes": list(class_names), "used_ops": list(cfg.INPUT.STRONG_GEOMETRIC_OPS),
                                      "counts": {op: matrix.tolist() for op, matrix in counts.items()}}}
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
