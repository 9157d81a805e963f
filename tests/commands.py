"""Shell commands written in docs (README.md, config headers), parsed as the code parses them."""
import importlib.util
import os
import shlex
import sys
from typing import Iterable, List

from detectron2.engine import default_argument_parser

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
    """The module ``tools/<tool>.py``."""
    spec = importlib.util.spec_from_file_location(tool, os.path.join(REPO, "tools", f"{tool}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[tool] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def parse_train_net(argv: List[str]):
    """``(args, cfg)`` of ``train_net.py`` arguments, as train_net.py reads them."""
    args = default_argument_parser().parse_args(argv)
    return args, load_config(os.path.join(REPO, args.config_file), args.opts)


def split(command: str) -> List[str]:
    return shlex.split(command)
