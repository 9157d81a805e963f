#!/usr/bin/env python3
"""Install soft-teacher-d2 and everything it needs, idempotently.

    python tools/install.py                 # install into the current Python
    python tools/install.py --check         # only report what is missing
    python tools/install.py --wheelhouse DIR --python-version 3.12
                                            # write wheels for an offline machine

Steps, each skipped when already satisfied:
  1. PyTorch and torchvision (``$SOFT_TEACHER_TORCH`` overrides the pip spec);
  2. the libraries Detectron2 and this project import (fvcore, pycocotools, ...);
  3. Detectron2: an importable ``detectron2`` is used as it is (for example one
     built from the official sources, with its ``_C`` extension); otherwise
     upstream's Python code is installed from the PyPI redistribution
     ``sal-detectron2==0.7.2``, with its cp310-only ``_C`` binary dropped so the
     wheel installs on any CPython 3;
  4. this package, editable (``pip install -e .``).

Every failure names the step that failed and what to do about it.
"""
from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_TORCH_SPEC = "torch==2.14.1 torchvision==0.29.1"
DETECTRON2_REDIST = "sal-detectron2==0.7.2"

# import name -> pip requirement, for everything Detectron2 and this package import.
RUNTIME_LIBRARIES: Dict[str, str] = {
    "fvcore": "fvcore>=0.1.5",
    "iopath": "iopath>=0.1.7,<0.1.10",
    "pycocotools": "pycocotools>=2.0.2",
    "cv2": "opencv-python-headless",
    "yacs": "yacs>=0.1.8",
    "omegaconf": "omegaconf>=2.1,<2.4",
    "hydra": "hydra-core>=1.1",
    "termcolor": "termcolor>=1.1",
    "tabulate": "tabulate",
    "cloudpickle": "cloudpickle",
    "tqdm": "tqdm>4.29.0",
    "tensorboard": "tensorboard",
    "matplotlib": "matplotlib",
    "PIL": "Pillow>=7.1",
    "packaging": "packaging",
    "pytest": "pytest",
}

# Wheels an offline machine that already has torch, torchvision, numpy, opencv,
# matplotlib, tensorboard, pyyaml, tqdm, cloudpickle, portalocker and pillow needs.
WHEELHOUSE_BINARY = [
    "pycocotools",
    "yacs",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
    "termcolor",
    "tabulate",
    "iopath>=0.1.7,<0.1.10",
]
# Published only as source distributions: built into wheels here.
WHEELHOUSE_SOURCE = ["fvcore==0.1.5.post20221221", "antlr4-python3-runtime==4.9.3"]
MANYLINUX_PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]


class InstallError(RuntimeError):
    """A step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Step:
    name: str
    reason: str
    pip_args: Sequence[str] = ()
    action: str = "pip"  # "pip" or "detectron2-redist"


def module_available(name: str) -> bool:
    """True when ``import name`` would find the module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def detectron2_importable() -> bool:
    """True when ``import detectron2`` succeeds in a fresh interpreter.

    A fresh process is used because a broken detectron2 (for example a ``_C``
    built for another torch) can fail at import time in ways a spec lookup
    does not see.
    """
    if not module_available("detectron2"):
        return False
    probe = subprocess.run(
        [sys.executable, "-c", "import detectron2.modeling, detectron2.engine"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0


def package_installed_editable() -> bool:
    """True when ``soft_teacher`` imports from this checkout."""
    spec = importlib.util.find_spec("soft_teacher") if module_available("soft_teacher") else None
    if spec is None or spec.origin is None:
        return False
    return os.path.dirname(os.path.dirname(os.path.abspath(spec.origin))) == REPO_ROOT


def plan_install(
    available: Callable[[str], bool],
    detectron2_ok: bool,
    package_ok: bool,
    torch_spec: str = DEFAULT_TORCH_SPEC,
) -> List[Step]:
    """Return the steps still needed, in order.

    Args:
        available: import name -> whether it can be imported now.
        detectron2_ok: whether an importable, working ``detectron2`` exists.
        package_ok: whether ``soft_teacher`` is already installed from this checkout.
        torch_spec: pip requirements for PyTorch and torchvision.
    """
    steps: List[Step] = []
    if not (available("torch") and available("torchvision")):
        steps.append(Step("pytorch", "torch/torchvision not importable", tuple(torch_spec.split())))
    missing = [req for mod, req in RUNTIME_LIBRARIES.items() if not available(mod)]
    if missing:
        steps.append(Step("libraries", "missing: " + ", ".join(missing), tuple(missing)))
    if not detectron2_ok:
        steps.append(
            Step(
                "detectron2",
                "no importable detectron2: installing upstream's Python code from "
                f"{DETECTRON2_REDIST} without its cp310-only _C binary",
                action="detectron2-redist",
            )
        )
    if not package_ok:
        steps.append(Step("soft-teacher", "package not installed from this checkout", ("-e", REPO_ROOT)))
    return steps


def strip_compiled_extension(src_wheel: str, dst_dir: str) -> str:
    """Rewrite a wheel without its ``.so`` files, tagged ``py3-none-any``.

    The RECORD is regenerated with fresh hashes so that pip accepts the result.
    Returns the path of the new wheel in ``dst_dir``.
    """
    base = os.path.basename(src_wheel)
    dist, version = base.split("-")[:2]
    dst = os.path.join(dst_dir, f"{dist}-{version}-py3-none-any.whl")
    records: List[str] = []
    record_name = None
    with zipfile.ZipFile(src_wheel) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            name = item.filename
            if name.endswith(".so") or name.endswith(".dist-info/RECORD"):
                continue
            data = zin.read(name)
            if name.endswith(".dist-info/WHEEL"):
                lines = [
                    line
                    for line in data.decode().splitlines()
                    if not line.startswith("Tag:") and not line.startswith("Root-Is-Purelib:")
                ]
                lines += ["Root-Is-Purelib: true", "Tag: py3-none-any"]
                data = ("\n".join(lines) + "\n").encode()
                record_name = name[: -len("WHEEL")] + "RECORD"
            zout.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{name},sha256={digest},{len(data)}")
        if record_name is None:
            raise InstallError(f"{src_wheel} has no .dist-info/WHEEL file; it is not a valid wheel")
        records.append(f"{record_name},,")
        zout.writestr(record_name, "\n".join(records) + "\n")
    return dst


def run_pip(args: Sequence[str], step: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print(f"[install] {step}: {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise InstallError(
            f"step '{step}' failed: `{' '.join(cmd)}` exited with {result.returncode}. "
            "Check that this machine reaches PyPI (or pass --find-links to a wheelhouse made "
            "with `make wheelhouse`), then run `make install` again."
        )


def download_detectron2_redist(dest: str) -> str:
    """Download the ``sal-detectron2`` wheel (tagged cp310) into ``dest``; return its path."""
    run_pip(
        [
            "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
            "--platform", "any", "-d", dest, DETECTRON2_REDIST,
        ],
        "detectron2 (download)",
    )
    found = glob.glob(os.path.join(dest, "sal_detectron2-*.whl"))
    if not found:
        raise InstallError(f"step 'detectron2' failed: pip downloaded no {DETECTRON2_REDIST} wheel into {dest}")
    return found[0]


def execute(step: Step) -> None:
    if step.action == "detectron2-redist":
        with tempfile.TemporaryDirectory() as tmp:
            wheel = strip_compiled_extension(download_detectron2_redist(tmp), tmp)
            # --no-deps: its requirements (numpy<2, black, ...) are not needed to run;
            # the libraries step installed what Detectron2 imports.
            run_pip(["install", "-q", "--no-deps", wheel], "detectron2")
        return
    extra = ["--no-build-isolation", "--no-deps"] if step.name == "soft-teacher" else []
    run_pip(["install", "-q", *extra, *step.pip_args], step.name)


def build_wheelhouse(dest: str, python_version: str) -> None:
    """Write every wheel an offline machine with PyTorch already installed needs."""
    os.makedirs(dest, exist_ok=True)
    platforms = [arg for plat in MANYLINUX_PLATFORMS for arg in ("--platform", plat)]
    run_pip(
        ["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
         *platforms, "-d", dest, *WHEELHOUSE_BINARY],
        "wheelhouse (binary wheels)",
    )
    run_pip(["wheel", "-q", "--no-deps", "-w", dest, *WHEELHOUSE_SOURCE], "wheelhouse (source builds)")
    with tempfile.TemporaryDirectory() as tmp:
        strip_compiled_extension(download_detectron2_redist(tmp), dest)
    run_pip(["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dest, REPO_ROOT], "wheelhouse (soft-teacher)")
    print(f"[install] wheelhouse ready in {dest}; on the offline machine run:\n"
          f"  python3 -m pip install --no-deps --no-index {dest}/*.whl")


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report the steps still needed")
    parser.add_argument("--wheelhouse", metavar="DIR", help="write wheels for an offline machine into DIR")
    parser.add_argument("--python-version", default="3.12", help="target Python of --wheelhouse")
    args = parser.parse_args(list(argv) or None)
    try:
        if args.wheelhouse:
            build_wheelhouse(args.wheelhouse, args.python_version)
            return 0
        torch_spec = os.environ.get("SOFT_TEACHER_TORCH", DEFAULT_TORCH_SPEC)
        steps = plan_install(module_available, detectron2_importable(), package_installed_editable(), torch_spec)
        if not steps:
            print("[install] everything is installed")
            return 0
        for step in steps:
            print(f"[install] step '{step.name}': {step.reason}", flush=True)
        if args.check:
            return 1
        for step in steps:
            execute(step)
        if not detectron2_importable():
            raise InstallError(
                "step 'detectron2' failed: detectron2 still does not import. Run "
                "`python -c 'import detectron2.modeling'` to see the error."
            )
        print("[install] done")
        return 0
    except InstallError as err:
        print(f"[install] ERROR: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
