"""How much of a detector's box AP is lost to naming the wrong class: COCO box AP with the classes merged.

Input is what Detectron2's ``COCOEvaluator`` saves, ``inference/coco_instances_results.json``: a list of
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in the dataset's image frame. To merge the
classes, every detection and annotation gets one category, and the detections of each image go through
one class-agnostic NMS: Detectron2's per-class NMS lets one object be detected once per class, and those
copies would otherwise count as false positives. That NMS also drops a detection of another object that
overlaps a higher-scoring one by more than its IoU, so on crowded images the class-agnostic figures can
come out below the class-aware ones. The class-aware figures of the same file are given beside.
"""
import contextlib
import copy
import io
from collections import defaultdict
from typing import Dict, List, Sequence

import torch
from torchvision.ops import nms

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

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
