"""What the benchmark tools share: a description of the machine, Markdown tables, and their results files.

A module that ``tools/benchmark_*.py`` import, not a command. Each benchmark writes ``results.json`` and
``results.md`` into its output folder and, when asked, rewrites its own section of ``BENCHMARKS.md`` (between
``<!-- name:begin -->`` and ``<!-- name:end -->``), leaving the hand-written text around it alone.
"""
import json
import os
import platform
from typing import Dict, Optional, Sequence

import detectron2
import torch

__all__ = ["machine_description", "machine_line", "markdown_table", "replace_section", "write_results"]


def machine_description() -> Dict[str, Optional[str]]:
    """The card (or "CPU"), its count, the CPU cores and the software versions of this process."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "card": gpu or "CPU",
        "gpus": torch.cuda.device_count(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if gpu else None,
        "detectron2": detectron2.__version__,
        "python": platform.python_version(),
    }


def machine_line(machine: Dict) -> str:
    """One sentence of a :func:`machine_description`, for a report's "Machine:" line: the machine class and the
    software versions (no date: reports are read by users)."""
    cuda = f", CUDA {machine['cuda']}" if machine.get("cuda") else ""
    gpus = f" x{machine['gpus']}" if machine.get("gpus", 0) > 1 else ""
    return (f"{machine['card']}{gpus}, {machine['cpu_cores']} CPU cores; torch {machine['torch']}{cuda}, "
            f"Detectron2 {machine['detectron2']}, Python {machine['python']}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table; each cell is written with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def replace_section(markdown_path: str, name: str, body: str) -> None:
    """Put ``body`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``markdown_path``.

    The markers are appended (the file created) when missing; the rest of the file is kept.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = ""
    if os.path.isfile(markdown_path):
        with open(markdown_path) as f:
            text = f.read()
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "# Benchmarks\n\n") + section + "\n"
    with open(markdown_path, "w") as f:
        f.write(text)


def write_results(output_dir: str, results: Dict, text: str, benchmarks_md: Optional[str], section: str,
                  section_text: Optional[str] = None) -> None:
    """Write ``results.json`` and ``results.md`` (``text``) into ``output_dir``, print ``text``, and
    rewrite ``section`` of ``benchmarks_md`` with it when that file is given (with ``section_text``
    instead when given: e.g. the same text with links relative to ``benchmarks_md``)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    if benchmarks_md:
        replace_section(benchmarks_md, section, text if section_text is None else section_text)
    print("\n" + text)
    print(f"\nWrote {os.path.join(output_dir, 'results.json')} and results.md"
          + (f"; updated {benchmarks_md}" if benchmarks_md else ""))
