"""Shell commands written in docs (README.md, config headers), parsed as the code parses them; tools run as commands."""
import importlib.util
import os
import shlex
import subprocess
import sys
from typing import Iterable, List, Sequence

from detectron2.engine import default_argument_parser

from engine_helpers import run_train_net
from soft_teacher.engine import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def join_commands(lines: Iterable[str], prefixes=("python ",)) -> List[str]:
    """Commands that start with one of ``prefixes``, with ``\\``-continued lines joined."""
    commands, current = [], None
    for line in lines:
        line = line.strip()
        if current is None and line.startswith(prefixes):
            current = line
        elif current is not None:
            current = current[:-1].rstrip() + " " + line
        if current is not None and not current.endswith("\\"):
            commands.append(current.split(" #")[0].strip())
            current = None
    return commands


def load_tool(tool: str):
    """The module ``tools/<tool>.py``, for the argument parsers of the commands docs show (README.md, config
    headers) and the tools with no package module behind them (install, make_coco_splits); test anything else
    of a tool through its package module, or run it with :func:`run_tool`."""
    spec = importlib.util.spec_from_file_location(tool, os.path.join(REPO, "tools", f"{tool}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[tool] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def run_tool(tool: str, argv: Sequence[str], timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``python tools/<tool>.py argv`` from the repository root (one torch thread); its output in ``.stdout``."""
    return run_train_net(list(argv), timeout, script=os.path.join("tools", f"{tool}.py"))


def parse_train_net(argv: List[str]):
    """``(args, cfg)`` of ``train_net.py`` arguments, as train_net.py reads them."""
    args = default_argument_parser().parse_args(argv)
    return args, load_config(os.path.join(REPO, args.config_file), args.opts)


def split(command: str) -> List[str]:
    return shlex.split(command)
