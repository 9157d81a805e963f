"""README.md's commands are ones the code accepts (make targets, train_net.py and tools/ arguments), and its
config-key table names keys that exist."""
import fnmatch
import os
import re
import shlex

import pytest

from detectron2.data import DatasetCatalog

import soft_teacher  # noqa: F401  (registers the datasets)
from helpers import REPO_ROOT, join_commands, load_tool, parse_train_net

with open(os.path.join(REPO_ROOT, "README.md")) as f:
    README = f.read()
SHELL_LINES = [
    line for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S) for line in block.splitlines()
]
PYTHON_COMMANDS = join_commands(SHELL_LINES, prefixes=("python ",))
TRAIN_NET = [shlex.split(c)[2:] for c in PYTHON_COMMANDS if shlex.split(c)[1] == "train_net.py"]
TOOLS = [shlex.split(c)[1:] for c in PYTHON_COMMANDS if shlex.split(c)[1].startswith("tools/")]
MAKE_COMMANDS = [shlex.split(c) for c in join_commands(SHELL_LINES, prefixes=("make ",))]


def test_readme_gives_the_two_commands_and_install():
    assert [c[:2] for c in MAKE_COMMANDS if c[1] in ("demo", "test", "install")] == [
        ["make", "install"], ["make", "demo"], ["make", "test"]]


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(REPO_ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert "make test" in ci_lines


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=" ".join)
def test_make_targets_and_variables_exist(command):
    with open(os.path.join(REPO_ROOT, "Makefile")) as f:
        makefile = f.read()
    target = command[1]
    assert re.search(rf"^{target}:", makefile, flags=re.M), f"no make target {target}"
    for assignment in command[2:]:
        variable = assignment.split("=")[0]
        assert re.search(rf"^{variable} \?=", makefile, flags=re.M), f"Makefile has no variable {variable}"


def test_readme_has_train_net_and_tool_commands():
    assert len(TRAIN_NET) >= 6 and {argv[0] for argv in TOOLS} >= {
        "tools/make_coco_splits.py", "tools/export_teacher.py", "tools/visualize_pseudo_labels.py",
        "tools/plot_metrics.py", "tools/class_agnostic_ap.py"}


@pytest.mark.parametrize("argv", TRAIN_NET, ids=lambda argv: " ".join(argv)[:80])
def test_train_net_commands_parse_and_name_known_datasets(argv):
    args, cfg = parse_train_net(argv)
    assert os.path.isfile(os.path.join(REPO_ROOT, args.config_file))
    declared = {entry[0] for entry in cfg.DATASETS.CUSTOM_COCO + cfg.DATASETS.CUSTOM_UNLABELED_FOLDERS}
    for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TRAIN_UNLABELED + cfg.DATASETS.TEST:
        assert name in DatasetCatalog.list() or name in declared, f"unknown dataset {name}"


@pytest.mark.parametrize("argv", TOOLS, ids=lambda argv: " ".join(argv)[:80])
def test_tool_commands_parse(argv):
    tool = os.path.splitext(os.path.basename(argv[0]))[0]
    load_tool(tool).parse_args(argv[1:])


def config_table_keys():
    """Full key names of README's "Config keys" table: ``A.B`` / ``C`` is ``A.B`` and ``A.C``; ``A.B_*`` a pattern."""
    section = re.search(r"^## Config keys\n(.*?)(?=^## )", README, flags=re.M | re.S).group(1)
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("|")]
    header, rows = [cell.strip() for cell in rows[0]], rows[2:]
    keys = []
    for row in rows:
        prefix = ""
        for name in re.findall(r"`([A-Z0-9_.*]+)`", row[0]):
            if "." in name:
                prefix = name.rsplit(".", 1)[0] + "."
            keys.append(name if "." in name else prefix + name)
    return header, keys


def test_config_table_names_existing_keys_and_leaves_defaults_to_config_py():
    from soft_teacher.config import _full_keys, get_cfg

    header, keys = config_table_keys()
    assert header == ["key", "meaning"]  # defaults are read in soft_teacher/config.py only
    existing = _full_keys(get_cfg())
    for key in keys:
        assert [k for k in existing if fnmatch.fnmatchcase(k, key)], f"README names a key that does not exist: {key}"
    soft_teacher_keys = [k for k in existing if k.startswith("SOFT_TEACHER.")]
    assert sorted(set(soft_teacher_keys) - set(keys)) == []
