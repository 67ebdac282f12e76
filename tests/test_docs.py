"""The pages' figures: every table of figures in README.md and docs/ names the shipped command that
prints it, and the benchmark table is exactly what that command prints from results.json. (The
testbed's tables are checked against `selfreward report` on a real sweep in test_mechanisms.py.)"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- (printed by|arithmetic): (.+?) -->$")
# a measured figure: a mean ± sd, or a number with two or three decimals (an arXiv id such as 2412.02674
# is not one, nor a setting's value such as `variant.meta_share=0.15`)
FIGURE = re.compile(r"±|(?<![\d.=])\d{1,3}\.\d{2,3}(?![\d.])")


def tables(page: Path) -> list[tuple[str, list[str]]]:
    """(the line above the table, its lines) for every markdown table of a page."""
    lines, out, i = page.read_text().splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|( ?:?-+:? ?\|)+$", lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            # the marker: among the 3 non-empty lines above (a printed table may start with its own line)
            near = [line for line in lines[:i] if line.strip()][-3:]
            above = next((line for line in reversed(near) if MARKER.match(line)), near[-1] if near else "")
            out.append((above, lines[i:j]))
            i = j
        else:
            i += 1
    return out


def figure_tables(page: Path) -> list[tuple[str, list[str]]]:
    return [(above, t) for above, t in tables(page) if FIGURE.search("\n".join(t[2:]))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_table_of_figures_names_the_command_that_prints_it(page):
    for above, table in figure_tables(page):
        assert MARKER.match(above), f"{page.name}: the table '{table[0][:60]}' has no '<!-- printed by: ... -->' line"


def test_the_benchmark_tables_are_what_their_commands_print():
    """The tables printed from shipped results files match them; the stage profile's table is printed
    from run directories a fresh clone does not have, so only its command is checked."""
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    commands = [MARKER.match(above).group(2) for above, _ in figure_tables(ROOT / "docs" / "benchmarks.md")]
    assert commands[0] == "python -m benchmarks --show" and "python -m benchmarks.real --show" in commands
    assert "\n<!-- printed by: python -m benchmarks.stages f664292=" in page
    for command in ("python -m benchmarks --show", "python -m benchmarks.real --show"):
        shown = subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, check=True,
                               cwd=ROOT).stdout
        assert shown in page, command


def test_the_marker_check_finds_an_unmarked_table(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n\n| arm | gain |\n| --- | --- |\n| base | +0.7 ± 1.3 |\n\n| a | b |\n| --- | --- |\n| x | y |\n")
    assert [t[0] for _, t in figure_tables(page)] == ["| arm | gain |"]
    assert not MARKER.match(figure_tables(page)[0][0])


def test_the_architecture_map_names_only_what_exists():
    """docs/architecture.md: every `selfreward.…` name is a module or an attribute of one, every path exists."""
    import importlib

    page = (ROOT / "docs" / "architecture.md").read_text()
    names = set(re.findall(r"`(selfreward(?:\.\w+)+)`", page))
    assert len(names) > 20
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes down from it
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attr in parts[cut:]:
                assert hasattr(obj, attr), f"docs/architecture.md names {name}: {obj.__name__} has no {attr}"
                obj = getattr(obj, attr)
            break
    for path in re.findall(r"`((?:recipes|prompts)/[\w/]*)`", page):
        assert (ROOT / path).exists(), path
