"""soft_teacher.engine.export_teacher (tools/export_teacher.py): the teacher as a plain checkpoint that
stock Detectron2 loads and runs."""
import logging
import os
import re

import numpy as np
import pytest
import torch

from detectron2.config import get_cfg as get_stock_detectron2_cfg
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from soft_teacher.engine import SoftTeacherCheckpointer, export_teacher, load_config

from helpers import make_tiny_cfg, write_config


@pytest.fixture
def trained(tmp_path):
    """A config file and a SoftTeacher checkpoint whose teacher differs from its student."""
    cfg = make_tiny_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 64, 64
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(0.01 * torch.randn_like(p))
    SoftTeacherCheckpointer(model, str(tmp_path)).save("model_final")
    return cfg, model, write_config(cfg, tmp_path / "config.yaml"), str(tmp_path / "model_final.pth")


def stock_predictor(cfg, weights):
    """DefaultPredictor of stock Detectron2 (no Soft Teacher keys) with ``cfg``'s model section."""
    stock = get_stock_detectron2_cfg()
    stock.MODEL = cfg.MODEL.clone()
    stock.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    stock.MODEL.WEIGHTS = weights
    stock.INPUT.MIN_SIZE_TEST, stock.INPUT.MAX_SIZE_TEST = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    return DefaultPredictor(stock)


def test_exported_teacher_loads_in_stock_detectron2_and_predicts_like_the_teacher(trained, tmp_path):
    cfg, model, config_file, checkpoint = trained
    output = str(tmp_path / "teacher.pth")
    export_teacher(load_config(config_file), checkpoint, output)

    predictor = stock_predictor(cfg, output)
    for name, value in model.teacher.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[name], value), name

    image = np.random.RandomState(0).randint(0, 255, (64, 64, 3)).astype(np.uint8)  # BGR, at the test size
    predicted = predictor(image)["instances"]
    model.eval()
    with torch.no_grad():
        expected = model([{"image": torch.as_tensor(image.transpose(2, 0, 1).astype("float32")),
                           "height": 64, "width": 64}])[0]["instances"]
    assert len(predicted) > 0
    torch.testing.assert_close(predicted.pred_boxes.tensor, expected.pred_boxes.tensor)
    torch.testing.assert_close(predicted.scores, expected.scores)


def test_export_of_a_checkpoint_without_teacher_writes_the_student_and_warns(trained, tmp_path):
    cfg, model, config_file, _ = trained
    student_only = {k: v for k, v in model.state_dict().items() if k.startswith("student.")}
    torch.save({"model": student_only}, tmp_path / "student_only.pth")
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("soft_teacher.engine.checkpoint").addHandler(handler)
    try:
        exported = tmp_path / "exported.pth"
        export_teacher(cfg, str(tmp_path / "student_only.pth"), str(exported))
    finally:
        logging.getLogger("soft_teacher.engine.checkpoint").removeHandler(handler)
    assert any("no teacher weights" in r.getMessage() for r in records)
    weights = torch.load(exported)["model"]
    for name, value in model.student.state_dict().items():
        assert torch.equal(weights[name], value), name


def test_export_fails_clearly_on_a_plain_checkpoint_or_another_config(trained, tmp_path):
    cfg, model, _, checkpoint = trained
    torch.save({"model": model.teacher.state_dict()}, tmp_path / "plain.pth")
    output = str(tmp_path / "out.pth")
    with pytest.raises(ValueError, match="not a Soft Teacher checkpoint"):
        export_teacher(cfg, str(tmp_path / "plain.pth"), output)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 5
    with pytest.raises(ValueError, match="does not match the config's detector"):
        export_teacher(cfg, checkpoint, output)
    assert not os.path.exists(output)


def test_export_of_a_missing_checkpoint_names_it_and_says_what_to_pass(tmp_path):
    missing = str(tmp_path / "no_such_model.pth")
    with pytest.raises(FileNotFoundError, match=f"Checkpoint {re.escape(missing)} not found. Pass a file that "):
        export_teacher(make_tiny_cfg(), missing, str(tmp_path / "out.pth"))
