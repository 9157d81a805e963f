#!/usr/bin/env python
"""Train or evaluate a Soft Teacher detector (or a supervised baseline), the Detectron2 way.

    python train_net.py --config-file configs/coco/soft_teacher_R50_FPN_10pct.yaml --num-gpus 8
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file CONFIG --resume          # continue from OUTPUT_DIR/last_checkpoint

Several machines: run on each with ``--num-machines N --machine-rank R --dist-url tcp://HOST0:PORT``.
``MODEL.DEVICE cpu`` runs every process on the CPU (gloo backend). ``--eval-only`` evaluates the
model(s) ``SOFT_TEACHER.EVAL_MODEL`` names: the teacher by default, or ``student`` or ``both``.
"""
import sys

import soft_teacher  # noqa: F401,I001  (first: registers our components, quiets Detectron2's import)

from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from soft_teacher.data import register_custom_datasets
from soft_teacher.engine import (
    ConfigError,
    SoftTeacherCheckpointer,
    SoftTeacherTrainer,
    launch_on_device,
    load_config,
    verify_expected_results,
)


def main(cfg, args):
    """One process: Detectron2's setup (output folder, log, config dump, seed), then evaluation or training."""
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="soft_teacher")
    register_custom_datasets(cfg)  # load_config did it in the launching process only, not in spawned ones
    if args.eval_only:
        model = SoftTeacherTrainer.build_model(cfg)
        SoftTeacherCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = SoftTeacherTrainer.test(cfg, model)
        if comm.is_main_process() and results:
            verify_expected_results(cfg, results)
        return results

    trainer = SoftTeacherTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    try:
        cfg = load_config(args.config_file, args.opts)
    except ConfigError as err:
        sys.exit(f"train_net.py: error: {err}")
    cfg.freeze()  # read once, here: launch hands it to every process with the arguments
    launch_on_device(
        main,
        cfg.MODEL.DEVICE,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(cfg, args),
    )


if __name__ == "__main__":
    invoke_main()
