"""The Soft Teacher config keys: the paper's defaults, and bad keys rejected by name."""
import pytest

import soft_teacher
from detectron2.modeling import META_ARCH_REGISTRY
from soft_teacher.config import UnknownConfigKeyError, get_cfg, merge_config


def test_paper_defaults():
    st = get_cfg().SOFT_TEACHER
    assert (st.INITIAL_SCORE_THRESH, st.RPN_PSEUDO_THRESH, st.CLS_PSEUDO_THRESH) == (0.5, 0.9, 0.9)
    assert st.REG_UNCERTAINTY_THRESH == 0.02
    assert (st.JITTER_TIMES, st.JITTER_SCALE) == (10, 0.06)
    assert st.UNSUP_WEIGHT == 4.0
    assert st.EMA_MOMENTUM == 0.999
    assert st.BURN_IN_ITERS == 0
    assert st.EVAL_MODEL == "teacher"


def test_batch_defaults_are_one_labeled_and_four_unlabeled_per_gpu_on_eight_gpus():
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 8  # the reference configs set this; Detectron2's own default is 16
    assert cfg.SOLVER.IMS_PER_BATCH_UNLABELED // 8 == 4
    assert cfg.SOLVER.IMS_PER_BATCH // 8 == 1


def test_unlabeled_datasets_default_to_none():
    assert get_cfg().DATASETS.TRAIN_UNLABELED == ()


def test_every_new_key_has_a_comment():
    import inspect

    source = inspect.getsource(soft_teacher.config.add_soft_teacher_config).splitlines()
    for i, line in enumerate(source):
        stripped = line.strip()
        if "=" in stripped and stripped.startswith(("st.", "cfg.")) and "CN()" not in stripped:
            assert source[i - 1].strip().startswith("#"), f"key without a comment: {stripped}"


def test_misspelled_option_is_named_with_the_closest_key():
    with pytest.raises(UnknownConfigKeyError) as err:
        merge_config(get_cfg(), opts=["SOFT_TEACHER.UNSUP_WEIGTH", "2.0"])
    assert str(err.value).startswith("Unknown config key 'SOFT_TEACHER.UNSUP_WEIGTH' in the command line.")
    assert "Did you mean SOFT_TEACHER.UNSUP_WEIGHT?" in str(err.value)


def test_misspelled_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("SOFT_TEACHER:\n  EMA_MOMENTUMM: 0.99\n")
    expected = f"'SOFT_TEACHER.EMA_MOMENTUMM' in {path}.*SOFT_TEACHER.EMA_MOMENTUM"
    with pytest.raises(UnknownConfigKeyError, match=expected):
        merge_config(get_cfg(), config_file=str(path))


def test_valid_file_and_options_are_merged(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("SOFT_TEACHER:\n  EMA_MOMENTUM: 0.99\n")
    cfg = merge_config(get_cfg(), config_file=str(path), opts=["SOFT_TEACHER.UNSUP_WEIGHT", "2.0"])
    assert (cfg.SOFT_TEACHER.EMA_MOMENTUM, cfg.SOFT_TEACHER.UNSUP_WEIGHT) == (0.99, 2.0)


def test_importing_the_package_registers_the_meta_architecture():
    assert "SoftTeacher" in META_ARCH_REGISTRY
