#!/usr/bin/env python
"""Write the standard COCO partial splits (labeled fold@percent and its unlabeled complement).

For fold ``s`` and percent ``p``: numpy's RNG seeded with ``s`` draws
``np.random.choice(range(N), size=int(p / 100 * N), replace=False)`` over the ``N``
images of ``instances_train2017.json`` in file order, which gives the same image ids as
the published splits. Writes, next to the annotations:

    annotations/semi_supervised/instances_train2017.{s}@{p}.json
    annotations/semi_supervised/instances_train2017.{s}@{p}-unlabeled.json

which ``soft_teacher`` registers as ``coco_2017_train_{p}pct_{s}`` and ``..._unlabeled``. The
splitting and writing is ``soft_teacher.data.datasets.coco_partial.write_coco_splits``.

Example (all 20 standard splits, from $DETECTRON2_DATASETS/coco):

    python tools/make_coco_splits.py --coco-root datasets/coco --percent 1 2 5 10 --fold 1 2 3 4 5
"""
import argparse
import os
import sys

from soft_teacher.data.datasets import dataset_root, write_coco_splits


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco-root", default=os.path.join(dataset_root(), "coco"),
                        help="COCO folder holding annotations/instances_train2017.json (default: %(default)s)")
    parser.add_argument("--annotation-file", default=None,
                        help="the full-set json to split (default: <coco-root>/annotations/instances_train2017.json)")
    parser.add_argument("--percent", type=float, nargs="+", default=[1, 2, 5, 10],
                        help="labeled percentages (default: %(default)s)")
    parser.add_argument("--fold", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="folds, i.e. numpy seeds (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    annotation_dir = os.path.join(args.coco_root, "annotations")
    source = args.annotation_file or os.path.join(annotation_dir, "instances_train2017.json")
    if not os.path.isfile(source):
        sys.exit(f"error: {source} does not exist; download COCO's annotations_trainval2017.zip and unzip it "
                 f"into {args.coco_root}, or pass --annotation-file.")
    write_coco_splits(source, annotation_dir, args.percent, args.fold)


if __name__ == "__main__":
    main()
