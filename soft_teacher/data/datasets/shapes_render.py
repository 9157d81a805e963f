"""Drawing of the synthetic ``shapes`` images: textured backgrounds, clutter, occluding objects.

Seven classes of shapes a detector must tell apart, some only by fine detail:

=================  ==========================================================
``circle``         filled disk
``ring``           circle outline (a disk with a hole)
``ellipse``        filled ellipse, axis ratio 0.45-0.7 (a circle-like silhouette)
``square``         filled square
``square_outline`` square outline (a square with a hole)
``triangle``       filled equilateral triangle
``star``           filled five-pointed star
=================  ==========================================================

Every image is 128-160 px on each side (random) and holds 2-7 objects of random
class, rotation, colour and size (circumscribed diameter log-uniform from 8 px, 14 px
for the outlines and the star, to 70 px), drawn over a textured background (gradient,
smooth blotches, stripes or checks) with clutter under them (line segments, open arcs,
scribbles, irregular blobs, all of which are *not* objects); Gaussian pixel noise
covers the whole image. Later objects occlude earlier ones: a placement that would
hide more than ``MAX_HIDDEN_FRACTION`` of an earlier object is retried elsewhere and
the object is dropped after ``PLACEMENT_TRIES`` failures; an object's colour must
differ clearly from the pixels it covers (else it is dropped too).

Boxes are the extent of the *visible* pixels of each object (as in COCO, which boxes
what can be seen), in Detectron2's continuous pixel frame: a visible pixel column
``x`` lies in ``[x, x + 1)``. ``area`` is the visible pixel count. In COCO's area ranges
about 60% of the boxes are small and 40% medium; none is large, so AP_l reads nan.

Determinism: image ``i`` of a subset is drawn from its own seed sequence
``(seed, subset, i)``, so it does not depend on drawing order, and the same seed
gives byte-identical images.
"""
from typing import List, Tuple

import cv2
import numpy as np

__all__ = ["SHAPE_CLASSES", "SUBSETS", "render_image"]

SHAPE_CLASSES = ("circle", "ring", "ellipse", "square", "square_outline", "triangle", "star")
# Smallest circumscribed diameter (px) per class: below these a hole or a point is not visible.
_MIN_SIZE = {"circle": 8, "ring": 14, "ellipse": 8, "square": 8, "square_outline": 14, "triangle": 10, "star": 14}
MAX_SIZE = 70
IMAGE_SIDE_RANGE = (128, 160)
OBJECTS_PER_IMAGE = (2, 7)
MAX_HIDDEN_FRACTION = 0.4
PLACEMENT_TRIES = 10
# An object's colour must differ by at least this much (sum over BGR) from >= 90% of the pixels it covers.
_MIN_COLOR_DISTANCE = 90
_COLOR_TRIES = 20
SUBSETS = {"train": 0, "val": 1, "test": 2}  # subset -> its key in the seed sequence
_SHIFT = 4  # fixed-point bits of the sub-pixel coordinates passed to cv2


def _fixed(values) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64) * (1 << _SHIFT)).astype(np.int32)


def _polygon_mask(shape_hw, cx, cy, radii, angles_deg) -> np.ndarray:
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    mask = np.zeros(shape_hw, np.uint8)
    cv2.fillPoly(mask, [_fixed(points)], 1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def _disk_mask(shape_hw, cx, cy, radius) -> np.ndarray:
    mask = np.zeros(shape_hw, np.uint8)
    cv2.circle(mask, tuple(int(v) for v in _fixed([cx, cy])), int(_fixed(radius)), 1, -1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def _square_mask(shape_hw, cx, cy, radius, angle) -> np.ndarray:
    return _polygon_mask(shape_hw, cx, cy, np.full(4, radius), angle + np.arange(4) * 90.0 + 45.0)


def _outline_thickness(radius: float) -> float:
    return max(1.5, 0.2 * radius)


def _shape_mask(name: str, shape_hw, cx: float, cy: float, radius: float, angle: float, rng) -> np.ndarray:
    """(H, W) bool silhouette of one shape of circumscribed radius ``radius`` px centred at (cx, cy)."""
    if name == "circle":
        return _disk_mask(shape_hw, cx, cy, radius)
    if name == "ring":
        return _disk_mask(shape_hw, cx, cy, radius) & ~_disk_mask(shape_hw, cx, cy, radius - _outline_thickness(radius))
    if name == "ellipse":
        minor = radius * rng.uniform(0.45, 0.7)
        mask = np.zeros(shape_hw, np.uint8)
        center = tuple(int(v) for v in _fixed([cx, cy]))
        axes = tuple(int(v) for v in _fixed([radius, minor]))
        cv2.ellipse(mask, center, axes, angle, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
        return mask.astype(bool)
    if name == "square":
        return _square_mask(shape_hw, cx, cy, radius, angle)
    if name == "square_outline":
        inner = radius - _outline_thickness(radius) * np.sqrt(2.0)
        return _square_mask(shape_hw, cx, cy, radius, angle) & ~_square_mask(shape_hw, cx, cy, inner, angle)
    if name == "triangle":
        return _polygon_mask(shape_hw, cx, cy, np.full(3, radius), angle + np.arange(3) * 120.0)
    if name == "star":
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
        return _polygon_mask(shape_hw, cx, cy, radii, angle + np.arange(10) * 36.0)
    raise ValueError(f"Unknown shape class {name!r}; the classes are {SHAPE_CLASSES}.")


def _random_color(rng) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _draw_background(rng, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 BGR texture: a gradient, smooth blotches, stripes or checks."""
    kind = rng.integers(4)
    base, other = _random_color(rng), _random_color(rng)
    if kind == 0:  # linear gradient in a random direction
        theta = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xs * np.cos(theta) + ys * np.sin(theta)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        return base + t[..., None] * (other - base)
    if kind == 1:  # smooth blotches: a coarse random grid of colours, upsampled
        cells = rng.integers(3, 10)
        grid = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
        blotches = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        return 0.5 * blotches + 0.5 * base
    amplitude = rng.uniform(15, 45)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 2:  # sinusoidal stripes of random period and orientation
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
        pattern = np.sin(2 * np.pi * (xs * np.cos(theta) + ys * np.sin(theta)) / period)
    else:  # checks
        cell = rng.integers(4, 20)
        pattern = ((xs // cell + ys // cell) % 2) * 2.0 - 1.0
    return base + amplitude * pattern[..., None] * np.sign(other - 127.5)


def _draw_clutter(rng, canvas: np.ndarray) -> None:
    """Draw 0-6 distractors in place: segments, open arcs, scribbles, irregular blobs."""
    height, width = canvas.shape[:2]
    for _ in range(rng.integers(0, 7)):
        kind = rng.integers(4)
        color = tuple(float(c) for c in _random_color(rng))
        thickness = int(rng.integers(1, 3))
        center = rng.uniform([0, 0], [width, height])
        if kind == 0:
            end = center + rng.uniform(-60, 60, size=2)
            cv2.line(canvas, tuple(int(v) for v in center), tuple(int(v) for v in end), color, thickness)
        elif kind == 1:  # an arc of at most 200 degrees: never a closed ring
            axes = tuple(int(v) for v in rng.uniform(5, 30, size=2))
            start = rng.uniform(0, 360)
            cv2.ellipse(canvas, tuple(int(v) for v in center), axes, rng.uniform(0, 180), start,
                        start + rng.uniform(60, 200), color, thickness)
        elif kind == 2:
            points = center + np.cumsum(rng.uniform(-15, 15, size=(int(rng.integers(3, 7)), 2)), axis=0)
            cv2.polylines(canvas, [points.astype(np.int32)], False, color, thickness)
        else:
            count = int(rng.integers(6, 11))
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=count))
            radii = rng.uniform(3, 15) * rng.uniform(0.3, 1.0, size=count)
            points = center + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
            cv2.fillPoly(canvas, [points.astype(np.int32)], color)


def _pick_contrasting_color(rng, canvas: np.ndarray, mask: np.ndarray):
    """A colour that differs by >= _MIN_COLOR_DISTANCE from >= 90% of ``canvas[mask]``, or None."""
    covered = canvas[mask]
    for _ in range(_COLOR_TRIES):
        color = _random_color(rng)
        if np.mean(np.abs(covered - color).sum(axis=1) >= _MIN_COLOR_DISTANCE) >= 0.9:
            return color
    return None


def _place_objects(rng, canvas: np.ndarray) -> List[Tuple[int, np.ndarray]]:
    """Draw the objects on ``canvas`` in place; return ``(class index, visible (H, W) bool mask)`` of each."""
    height, width = canvas.shape[:2]
    placed: List[List] = []  # [class index, full mask, visible mask]
    for _ in range(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1)):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        name = SHAPE_CLASSES[label]
        radius = 0.5 * np.exp(rng.uniform(np.log(_MIN_SIZE[name]), np.log(MAX_SIZE)))
        for _ in range(PLACEMENT_TRIES):
            cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
            mask = _shape_mask(name, (height, width), cx, cy, radius, rng.uniform(0, 360), rng)
            if all((visible & ~mask).sum() >= (1 - MAX_HIDDEN_FRACTION) * full.sum() for _, full, visible in placed):
                break
        else:
            continue
        color = _pick_contrasting_color(rng, canvas, mask)
        if color is None:
            continue
        canvas[mask] = color
        for entry in placed:
            entry[2] = entry[2] & ~mask
        placed.append([label, mask, mask])
    return [(label, visible) for label, _, visible in placed]


def _visible_box(mask: np.ndarray) -> List[int]:
    """XYWH box of the true pixels of a (H, W) bool mask, continuous pixel frame."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]


def render_image(seed: int, subset: str, index: int, draw_objects: bool = True) -> Tuple[np.ndarray, List[dict]]:
    """Draw image ``index`` of ``subset`` ("train", "val" or "test") for generator seed ``seed``.

    Returns the (H, W, 3) uint8 BGR image and its objects as dicts with ``category_id``
    (1-based index into ``SHAPE_CLASSES``), ``bbox`` (XYWH of the visible pixels) and
    ``area`` (visible pixel count). ``draw_objects=False`` draws the same background,
    clutter and noise without the objects, which shows exactly which pixels the objects
    changed (the tests check the boxes against it).
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {tuple(SUBSETS)}, got {subset!r}.")
    scene_seq, noise_seq = np.random.SeedSequence(seed, spawn_key=(SUBSETS[subset], index)).spawn(2)
    rng, noise_rng = np.random.default_rng(scene_seq), np.random.default_rng(noise_seq)
    height, width = (int(v) for v in rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, size=2))
    canvas = np.clip(_draw_background(rng, height, width), 0, 255).astype(np.float32)
    _draw_clutter(rng, canvas)
    objects = _place_objects(rng, canvas) if draw_objects else []
    noise = noise_rng.normal(0.0, noise_rng.uniform(2.0, 10.0), size=canvas.shape)
    image = np.clip(np.round(canvas + noise), 0, 255).astype(np.uint8)
    annotations = [
        {"category_id": label + 1, "bbox": _visible_box(visible), "area": int(visible.sum())}
        for label, visible in objects
    ]
    return image, annotations
