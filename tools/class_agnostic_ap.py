#!/usr/bin/env python
"""Box AP of saved detections with the classes told apart and merged: how much AP the class names cost.

Each PREDICTIONS file is what evaluation saves (``<OUTPUT_DIR>/inference/coco_instances_results.json``, or
``inference/teacher/...`` of a Soft Teacher run evaluating both models). The class-agnostic figures merge
every class into one, after one NMS per image over all classes (``--nms-iou``), so that an object found
once per class is one detection (``soft_teacher.utils.class_agnostic_eval``). A detector that finds the
objects but names them wrongly has a high class-agnostic AP and a low class-aware one.

Usage::

    python tools/class_agnostic_ap.py --dataset shapes_val \\
        output/shapes/supervised_R18_FPN_1pct/inference/coco_instances_results.json
    python tools/class_agnostic_ap.py --config-file my_config.yaml --dataset my_val my_run/inference/*.json
"""
import argparse
import json
import sys
from typing import Optional, Sequence

import soft_teacher  # noqa: F401,I001  (first: registers the built-in datasets, quiets Detectron2's import)

from detectron2.data import DatasetCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict

from soft_teacher.engine import load_config
from soft_teacher.utils.class_agnostic_eval import FIGURES, class_aware_and_agnostic_ap


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
