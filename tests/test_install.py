"""The installer's decisions: what it installs on which machine, and the wheel it rewrites."""
import os
import subprocess
import sys
import zipfile

import pytest
from helpers import REPO_ROOT, load_tool

install = load_tool("install")


def everything_available(name):
    return True


def step_names(steps):
    return [s.name for s in steps]


def test_nothing_to_do_when_everything_is_installed():
    assert install.plan_install(everything_available, detectron2_ok=True, package_ok=True) == []


def test_existing_detectron2_is_used_as_is():
    steps = install.plan_install(everything_available, detectron2_ok=True, package_ok=False)
    assert step_names(steps) == ["soft-teacher"]


def test_missing_detectron2_installs_the_redistribution_without_binary():
    steps = install.plan_install(everything_available, detectron2_ok=False, package_ok=True)
    assert step_names(steps) == ["detectron2"]
    assert steps[0].action == "detectron2-redist"
    assert "sal-detectron2==0.7.2" in steps[0].reason


def test_bare_machine_installs_every_step_in_dependency_order():
    steps = install.plan_install(lambda name: False, detectron2_ok=False, package_ok=False)
    assert step_names(steps) == ["pytorch", "libraries", "detectron2", "soft-teacher"]
    assert steps[0].pip_args == tuple(install.DEFAULT_TORCH_SPEC.split())


def test_torch_spec_can_be_overridden():
    steps = install.plan_install(lambda name: name not in ("torch",), True, True, torch_spec="torch==2.9.1")
    assert steps[0].pip_args == ("torch==2.9.1",)


def test_only_missing_libraries_are_requested():
    steps = install.plan_install(lambda name: name != "pycocotools", True, True)
    assert step_names(steps) == ["libraries"]
    assert steps[0].pip_args == ("pycocotools>=2.0.2",)


def cp310_wheel_with_binary(folder):
    """A wheel shaped like sal-detectron2's: tagged cp310, with a compiled ``_C`` and a RECORD."""
    src = folder / "demo_pkg-1.0-cp310-none-any.whl"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("demo_pkg/__init__.py", "X = 1\n")
        zf.writestr("demo_pkg/_C.cpython-310-x86_64-linux-gnu.so", b"\x7fELF")
        zf.writestr("demo_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp310-none-any\n")
        zf.writestr("demo_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
        zf.writestr("demo_pkg-1.0.dist-info/RECORD", "stale\n")
    return src


def test_stripped_wheel_drops_binaries_and_is_tagged_for_any_python(tmp_path):
    out = install.strip_compiled_extension(str(cp310_wheel_with_binary(tmp_path)), str(tmp_path))
    assert os.path.basename(out) == "demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        wheel_meta = zf.read("demo_pkg-1.0.dist-info/WHEEL").decode()
        record = zf.read("demo_pkg-1.0.dist-info/RECORD").decode()
    assert not any(n.endswith(".so") for n in names)
    assert "Tag: py3-none-any" in wheel_meta and "cp310" not in wheel_meta
    assert "Root-Is-Purelib: true" in wheel_meta
    assert "demo_pkg/__init__.py,sha256=" in record and "stale" not in record


def test_stripped_wheel_installs_with_pip(tmp_path):
    out = install.strip_compiled_extension(str(cp310_wheel_with_binary(tmp_path)), str(tmp_path))
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), out],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "demo_pkg" / "__init__.py").exists()


def test_invalid_wheel_is_reported_not_crashed(tmp_path):
    src = tmp_path / "broken-1.0-cp310-none-any.whl"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("broken/__init__.py", "")
    with pytest.raises(install.InstallError, match="not a valid wheel"):
        install.strip_compiled_extension(str(src), str(tmp_path))


def test_failed_pip_step_names_the_step_and_the_remedy(monkeypatch):
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1))
    with pytest.raises(install.InstallError, match=r"step 'libraries' failed.*make install"):
        install.run_pip(["install", "nothing"], "libraries")


def test_check_mode_reports_nothing_missing_on_this_machine():
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tools", "install.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "everything is installed" in result.stdout
