"""A ResNet-FPN backbone of any width, for detectors small enough to train from scratch on a CPU.

Detectron2's ``build_resnet_fpn_backbone`` builds ResNet-18 and -34 only at their standard width (64 channels out
of ``res2``). :func:`build_small_resnet_fpn_backbone` builds the same two-block ``BasicBlock`` stages of ResNet-18
at the width ``MODEL.RESNETS.RES2_OUT_CHANNELS`` gives (doubling per stage, as usual) after a stem of
``MODEL.RESNETS.STEM_OUT_CHANNELS``, under the usual FPN (``MODEL.FPN.*``). At 32 channels and a 32-channel FPN
it trains about twice as fast on a CPU as ResNet-18-FPN with 64 channels (``configs/shapes/soft_teacher_demo.yaml``).
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

__all__ = ["build_small_resnet_fpn_backbone"]

BLOCKS_PER_STAGE = (2, 2, 2, 2)  # ResNet-18's


@BACKBONE_REGISTRY.register()
def build_small_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet-18's layout at ``MODEL.RESNETS.RES2_OUT_CHANNELS`` channels (any width), with an FPN on top.

    Reads ``MODEL.RESNETS.{STEM_OUT_CHANNELS, RES2_OUT_CHANNELS, NORM, OUT_FEATURES}``, ``MODEL.BACKBONE.FREEZE_AT``
    and ``MODEL.FPN.{IN_FEATURES, OUT_CHANNELS, NORM, FUSE_TYPE}``; the stages ``res2``-``res5`` have strides
    4-32 and ``RES2_OUT_CHANNELS * 2**i`` channels.
    """
    resnets = cfg.MODEL.RESNETS
    if resnets.DEPTH != 18:
        raise ValueError(f"build_small_resnet_fpn_backbone builds ResNet-18's layout: set MODEL.RESNETS.DEPTH 18, not "
                         f"{resnets.DEPTH} (or use build_resnet_fpn_backbone).")
    stem = BasicStem(input_shape.channels, resnets.STEM_OUT_CHANNELS, norm=resnets.NORM)
    stages, in_channels, out_channels = [], resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS
    for index, num_blocks in enumerate(BLOCKS_PER_STAGE):
        strides = [1 if index == 0 else 2] + [1] * (num_blocks - 1)
        stages.append(ResNet.make_stage(BasicBlock, num_blocks, stride_per_block=strides, in_channels=in_channels,
                                        out_channels=out_channels, norm=resnets.NORM))
        in_channels, out_channels = out_channels, out_channels * 2
    bottom_up = ResNet(stem, stages, out_features=resnets.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
    fpn = cfg.MODEL.FPN
    return FPN(bottom_up=bottom_up, in_features=fpn.IN_FEATURES, out_channels=fpn.OUT_CHANNELS, norm=fpn.NORM,
               top_block=LastLevelMaxPool(), fuse_type=fpn.FUSE_TYPE)
