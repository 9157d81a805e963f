"""build_small_resnet_fpn_backbone: ResNet-18's layout at any width, under an FPN (the demo's detector)."""
import pytest
import torch
from detectron2.modeling import build_backbone

from helpers import make_tiny_cfg


def small_cfg(width=32, fpn_channels=16):
    cfg = make_tiny_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_small_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = width
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = width
    cfg.MODEL.FPN.OUT_CHANNELS = fpn_channels
    return cfg


def test_stages_double_the_width_from_res2_with_resnet18_strides_and_blocks():
    backbone = build_backbone(small_cfg(width=16))
    shapes = backbone.bottom_up.output_shape()
    assert [(shapes[f"res{i}"].channels, shapes[f"res{i}"].stride) for i in range(2, 6)] == [
        (16, 4), (32, 8), (64, 16), (128, 32)]
    assert [len(getattr(backbone.bottom_up, f"res{i}")) for i in range(2, 6)] == [2, 2, 2, 2]
    features = backbone(torch.zeros(1, 3, 64, 96))
    assert {name: tuple(f.shape) for name, f in features.items()} == {
        "p2": (1, 16, 16, 24), "p3": (1, 16, 8, 12), "p4": (1, 16, 4, 6), "p5": (1, 16, 2, 3), "p6": (1, 16, 1, 2)}


def test_at_resnet18s_width_it_is_detectron2s_resnet18_fpn():
    cfg = small_cfg(width=64, fpn_channels=32)
    small = build_backbone(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    standard = build_backbone(cfg)
    assert {n: tuple(p.shape) for n, p in small.named_parameters()} == {
        n: tuple(p.shape) for n, p in standard.named_parameters()}
    assert small.output_shape() == standard.output_shape()


def test_another_depth_is_refused_with_what_to_set():
    cfg = small_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    with pytest.raises(ValueError, match="MODEL.RESNETS.DEPTH 18"):
        build_backbone(cfg)
