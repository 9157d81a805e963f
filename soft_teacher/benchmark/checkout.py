"""The checkout that the benchmarks and the demo run from: the folder holding ``train_net.py`` and ``configs/``.

In a source tree or an editable install it is the folder above this package. Installed from a wheel (README's
route for offline GPU clusters), the package lives in site-packages without them; the tools are then run from
the checkout, so the current folder is used.
"""
import os

__all__ = ["CHECKOUT", "find_checkout", "is_checkout"]


def is_checkout(folder: str) -> bool:
    """Whether ``folder`` holds ``train_net.py`` and ``configs/``."""
    return os.path.isfile(os.path.join(folder, "train_net.py")) and os.path.isdir(os.path.join(folder, "configs"))


def find_checkout(package_parent: str, cwd: str) -> str:
    """``package_parent`` if it is a checkout, else ``cwd`` if it is one.

    Raises:
        FileNotFoundError: neither is, with what to do.
    """
    for folder in (package_parent, cwd):
        if is_checkout(folder):
            return folder
    raise FileNotFoundError(
        f"soft-teacher-d2's checkout (the folder holding train_net.py and configs/) is neither {package_parent} "
        f"(the package is installed from a wheel) nor the current folder {cwd}: run the tools from the checkout")


try:
    CHECKOUT = find_checkout(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             os.getcwd())
except FileNotFoundError as err:
    raise SystemExit(f"error: {err}") from None
