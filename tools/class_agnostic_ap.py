#!/usr/bin/env python
"""Box AP of saved detections with the classes told apart and merged: how much AP the class names cost.

Each PREDICTIONS file is what evaluation saves (``<OUTPUT_DIR>/inference/coco_instances_results.json``, or
``inference/teacher/...`` of a Soft Teacher run evaluating both models): a list of ``{"image_id",
"category_id", "bbox": [x, y, w, h], "score"}`` in the dataset's image frame. A detector that finds the
objects but names them wrongly has a high class-agnostic AP and a low class-aware one.

To merge the classes (:func:`merge_classes`), every detection and annotation gets one category, and the
detections of each image go through one class-agnostic NMS (``--nms-iou``): Detectron2's per-class NMS lets
one object be detected once per class, and those copies would otherwise count as false positives. That NMS
also drops a detection of another object that overlaps a higher-scoring one by more than its IoU, so on
crowded images the class-agnostic figures can come out below the class-aware ones, which are given beside
(:func:`class_aware_and_agnostic_ap`).

Usage::

    python tools/class_agnostic_ap.py --dataset shapes_val \\
        output/shapes/supervised_R18_FPN_1pct/inference/coco_instances_results.json
    python tools/class_agnostic_ap.py --config-file my_config.yaml --dataset my_val my_run/inference/*.json
"""
import argparse
import contextlib
import copy
import io
import json
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import torch
from torchvision.ops import nms

import soft_teacher  # noqa: F401,I001  (first: registers the built-in datasets, quiets Detectron2's import)

from detectron2.data import DatasetCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from soft_teacher.engine import load_config

# Figures reported, as indices into COCOeval.stats.
FIGURES = {"AP": 0, "AP50": 1, "AR100": 8}


def merge_classes(detections: Sequence[dict], nms_iou: float = 0.5) -> List[dict]:
    """``detections`` with ``category_id`` 1, after one NMS per image over all classes at ``nms_iou``."""
    by_image = defaultdict(list)
    for detection in detections:
        by_image[detection["image_id"]].append(detection)
    merged = []
    for image_detections in by_image.values():
        boxes = torch.tensor([d["bbox"] for d in image_detections], dtype=torch.float64).view(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
        scores = torch.tensor([d["score"] for d in image_detections], dtype=torch.float64)
        merged.extend(dict(image_detections[i], category_id=1) for i in nms(boxes, scores, nms_iou).tolist())
    return merged


def _one_category(ground_truth: dict) -> dict:
    annotations = [dict(a, category_id=1) for a in ground_truth["annotations"]]
    return dict(ground_truth, annotations=annotations, categories=[{"id": 1, "name": "object"}])


def box_ap(ground_truth: dict, detections: Sequence[dict]) -> Dict[str, float]:
    """COCO box ``AP``, ``AP50`` and ``AR100`` (in %) of ``detections`` against a COCO-format ``ground_truth``.

    Neither argument is changed (pycocotools adds keys to what it is given: it gets copies).

    Raises:
        ValueError: a detection's image or category is not in ``ground_truth`` (the predictions of another
            dataset, or contiguous class indices where the dataset's category ids belong).
    """
    for field, known, name in (("image_id", {i["id"] for i in ground_truth["images"]}, "image"),
                               ("category_id", {c["id"] for c in ground_truth["categories"]}, "category")):
        strangers = sorted({d[field] for d in detections} - known)
        if strangers:
            raise ValueError(f"{len(strangers)} {name} ids of the detections are not in the ground truth (first: "
                             f"{strangers[0]}): were they predicted on another dataset?")
    if not detections:
        return dict.fromkeys(FIGURES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
        coco = COCO()
        coco.dataset = copy.deepcopy(ground_truth)
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(copy.deepcopy(list(detections))), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: 100.0 * max(float(evaluation.stats[index]), 0.0) for name, index in FIGURES.items()}


def class_aware_and_agnostic_ap(ground_truth: dict, detections: Sequence[dict], nms_iou: float = 0.5) -> dict:
    """``{"class_aware": box_ap(...), "class_agnostic": box_ap(...)}`` of one set of detections."""
    return {
        "class_aware": box_ap(ground_truth, detections),
        "class_agnostic": box_ap(_one_category(ground_truth), merge_classes(detections, nms_iou)),
    }

# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", nargs="+", metavar="PREDICTIONS",
                        help="coco_instances_results.json files saved by evaluation on --dataset")
    parser.add_argument("--dataset", required=True, help="registered dataset the detections were made on")
    parser.add_argument("--config-file", metavar="FILE",
                        help="a config whose DATASETS.CUSTOM_COCO registers --dataset (not needed for built-in sets)")
    parser.add_argument("--nms-iou", type=float, default=0.5,
                        help="IoU of the class-agnostic NMS (default 0.5; it also drops overlapping other objects)")
    parser.add_argument("--output", metavar="FILE", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        detections = {}
        for path in args.predictions:  # all read first: a wrong path fails before the dataset loads
            with open(path) as f:
                detections[path] = json.load(f)
            if not isinstance(detections[path], list):
                raise ValueError(f"{path} is not a list of detections: give an evaluation's "
                                 "inference/coco_instances_results.json")
        if args.config_file:
            load_config(args.config_file, [])
        if args.dataset not in DatasetCatalog.list():
            raise ValueError(f"dataset '{args.dataset}' is not registered: give a built-in name (e.g. shapes_val) "
                             "or --config-file with the config that registers it")
        ground_truth = convert_to_coco_dict(args.dataset)
        results = {}
        for path, path_detections in detections.items():
            try:
                results[path] = class_aware_and_agnostic_ap(ground_truth, path_detections, args.nms_iou)
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
    except (KeyError, TypeError) as err:  # a detection without image_id, category_id, bbox or score
        print(f"error: a detection lacks a field or has a malformed one ({err!r}): give an evaluation's "
              "inference/coco_instances_results.json", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:  # ValueError includes ConfigError and bad JSON
        print(f"error: {err}", file=sys.stderr)
        return 2
    width = max(len("predictions"), *(len(path) for path in results))
    names = list(FIGURES)
    print(f"{'predictions':<{width}}  " + "  ".join(f"{n:>6}" for n in names) + "  "
          + "  ".join(f"{'agn. ' + n:>11}" for n in names))
    for path, figures in results.items():
        print(f"{path:<{width}}  " + "  ".join(f"{figures['class_aware'][n]:6.1f}" for n in names) + "  "
              + "  ".join(f"{figures['class_agnostic'][n]:11.1f}" for n in names))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"dataset": args.dataset, "nms_iou": args.nms_iou, "results": results}, f, indent=2)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
