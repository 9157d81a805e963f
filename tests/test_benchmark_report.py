"""tools/benchmark_report.py, what the benchmarks share: their results files and their own section of
BENCHMARKS.md."""
import json

import benchmark_report as report


def test_a_section_is_appended_once_then_replaced_in_place(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nHand-written text.\n")
    report.replace_section(str(path), "speed", "first")
    report.replace_section(str(path), "speed", "second")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written text.\n")
    assert text.count("<!-- speed:begin -->") == 1 and "second" in text and "first" not in text


def test_results_go_to_json_markdown_and_the_named_section(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    report.write_results(str(tmp_path / "out"), {"ratio": 1.4}, "| a |", str(md), "speed")
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == {"ratio": 1.4}
    assert (tmp_path / "out" / "results.md").read_text() == "| a |\n"
    assert "<!-- speed:begin -->\n| a |\n<!-- speed:end -->" in md.read_text()


def test_the_section_may_get_its_own_text_with_links_relative_to_the_markdown_file(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    report.write_results(str(tmp_path / "out"), {}, "![c](c.png)", str(md), "accuracy", section_text="![c](docs/c.png)")
    assert (tmp_path / "out" / "results.md").read_text() == "![c](c.png)\n"
    assert "<!-- accuracy:begin -->\n![c](docs/c.png)\n<!-- accuracy:end -->" in md.read_text()


def test_machine_line_names_the_card_and_versions():
    line = report.machine_line(report.machine_description())
    assert line.startswith(("CPU", "NVIDIA")) and "torch" in line and "Detectron2" in line
