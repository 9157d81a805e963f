"""Tiny on-disk datasets for the data pipeline tests: images with one bright box, COCO jsons, image folders."""
import json
import os
from typing import List, Sequence, Tuple

import cv2
import numpy as np

CATEGORIES = ("cat", "dog", "bird")
BACKGROUND, FOREGROUND = 30, 230


def box_image(height: int, width: int, box: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8 dark image with the integer box ``[x0, y0, x1, y1)`` filled bright."""
    image = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = FOREGROUND
    return image


def bright_extent(image: np.ndarray) -> np.ndarray:
    """XYXY continuous box around the pixels of an (H, W, 3) image brighter than mid-way between the two levels."""
    ys, xs = np.nonzero(image.mean(axis=2) > (BACKGROUND + FOREGROUND) / 2)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def write_coco(folder: str, sizes: List[Tuple[int, int]], categories=CATEGORIES, bbox=None) -> Tuple[str, str]:
    """PNG images of the given (height, width) with one box each, and their COCO json; returns (json, image_root).

    Image ``i`` holds the box ``[w/4, h/4, w/2, h/2]`` (XYWH) of category ``i % len(categories)``
    unless ``bbox`` gives the XYWH box of every image.
    """
    image_root = os.path.join(folder, "images")
    os.makedirs(image_root, exist_ok=True)
    images, annotations = [], []
    for i, (h, w) in enumerate(sizes):
        xywh = list(bbox) if bbox is not None else [w // 4, h // 4, w // 2, h // 2]
        x, y, bw, bh = xywh
        name = f"{i:04d}.png"
        cv2.imwrite(os.path.join(image_root, name), box_image(h, w, [x, y, x + max(bw, 0), y + max(bh, 0)]))
        images.append({"id": 100 + i, "file_name": name, "height": h, "width": w})
        annotations.append({"id": 1 + i, "image_id": 100 + i, "category_id": 1 + i % len(categories),
                            "bbox": xywh, "area": abs(bw * bh), "iscrowd": 0})
    json_file = os.path.join(folder, "instances.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1 + i, "name": c} for i, c in enumerate(categories)]}, f)
    return json_file, image_root


def write_folder(folder: str, sizes: List[Tuple[int, int]]) -> List[str]:
    """JPEG images of the given (height, width), each with a centred box; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = os.path.join(folder, f"img_{i:03d}.jpg")
        cv2.imwrite(path, box_image(h, w, [w // 4, h // 4, 3 * w // 4, 3 * h // 4]))
        paths.append(path)
    return paths
