"""Issue 21 item 1: every figure in the README's performance tables is printed by a benchmark.

The benchmarks in ``benchmarks/`` run with ``--record`` keep what they print in
``benchmarks/results/NAME.txt`` under a header giving the command, the date and the CPU
(``benchmarks/_record.py``). A *performance table* of the README is a Markdown table whose
header line follows, on the line just above it, a marker naming where its figures come from:

``<!-- figures: benchmarks/results/NAME.txt [benchmarks/results/OTHER.txt ...] -->``
    every row from these files;
``<!-- figures: each row's benchmark -->``
    each row from the results of the ``benchmarks/NAME.py`` scripts the row names.

In every body row of a performance table, every number of every cell after the first (the
first cell names what the row measures, with its settings) must be one of the numbers of
its results files, written the same way: ``0.80`` is not ``0.8``, ``2 017`` is not
``2017``; thin and no-break spaces count as spaces. A number is a run of digits not glued
to a letter before it (``X0``, ``fp32`` and the second ``128`` of ``128x128`` are names,
not figures), with its thousands grouped by spaces, its decimals and an exponent
(``3.3e-6``). Every table of the Performance section, and every table elsewhere whose header
names a time, a rate or a size, must carry a marker. Sizes quoted in sentences are listed
in ``SIZE_STATEMENTS``; rows whose figures another issue is re-measuring in ``PENDING``
(strict xfail: the entry must go once the row passes). Every results file must start with
the header of ``benchmarks/_record.py`` and every benchmark must be able to record. Nothing
is run here: the test reads the README and the recorded files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"

MARKER = re.compile(r"^<!-- figures: (.+?) -->\s*$")
PER_ROW = "each row's benchmark"
NUMBER = re.compile(r"(?<![\w.])\d+(?: \d{3})*(?:\.\d+)?(?:e-?\d+)?(?!\d)")
SCRIPT = re.compile(r"benchmarks/(\w+)\.py")
#: A header naming a time, a rate or a size makes a table a performance table.
PERFORMANCE_HEADER = re.compile(r"\btime\b|/s\b|\bs/|ms/|\bmemory\b|MiB|\bbytes\b|\bfigure\b")

#: Rows whose figures are being re-measured for issue 17 (first cell starts with the key),
#: each with what it still lacks. Strict: once a row passes, its entry must go.
PENDING: dict[str, str] = {}

#: Figures in sentences outside the tables: (pattern whose group 1 is the figure, results file).
SIZE_STATEMENTS = [
    (r"memory stays flat in N: a peak of\s+([\d.]+) MiB", "gen_events"),
    (r"gzip \(level 1, the default\) images of the lecture preset take ([\d ]+) B", "file_size"),
    (r"single-pixel hits: ([\d ]+) B\)", "memory"),
]

_SPACES = str.maketrans({"\u2009": " ", "\u202f": " ", "\u00a0": " "})


def numbers(text: str) -> list[str]:
    """The figures of ``text`` as written (thin and no-break spaces made plain)."""
    return NUMBER.findall(text.translate(_SPACES))


@dataclass(frozen=True)
class Row:
    section: str  #: the heading above the table
    line: int  #: 1-based line in README.md
    cells: tuple[str, ...]
    sources: tuple[str, ...]  #: results file names (NAME for benchmarks/results/NAME.txt)

    @property
    def name(self) -> str:
        return self.cells[0]


def _cells(line: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|")))


def _tables(lines: list[str]):
    """(chapter, section, header line index, marker text or None, body lines) of every table.

    The chapter is the ``##`` heading above the table, the section the nearest heading.
    """
    chapter = section = ""
    fenced, i = False, 0
    while i < len(lines):
        line = lines[i]
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            section = line.lstrip("#").strip()
            chapter = section if line.startswith("## ") else chapter
        if not fenced and line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            m = MARKER.match(lines[i - 1]) if i else None
            yield chapter, section, i, (m.group(1) if m else None), lines[i + 2 : j]
            i = j
        else:
            i += 1


def _sources(marker: str, cells: tuple[str, ...]) -> tuple[str, ...]:
    if marker == PER_ROW:
        return tuple(dict.fromkeys(SCRIPT.findall(" ".join(cells))))
    return tuple(re.fullmatch(r"benchmarks/results/(\w+)\.txt", f).group(1) for f in marker.split())


def performance_rows() -> list[Row]:
    lines = README.read_text().splitlines()
    rows = []
    for _, section, i, marker, body in _tables(lines):
        if marker is None:
            continue
        for k, line in enumerate(body):
            cells = _cells(line)
            rows.append(Row(section, i + 3 + k, cells, _sources(marker, cells)))
    return rows


def _params():
    out = []
    for row in performance_rows():
        pending = next((why for key, why in PENDING.items() if row.name.startswith(key)), None)
        marks = [pytest.mark.xfail(strict=True, reason=pending)] if pending else []
        out.append(pytest.param(row, id=f"{row.section[:20]}: {row.name[:40]}", marks=marks))
    return out


def _recorded(name: str) -> set[str]:
    path = RESULTS / f"{name}.txt"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run benchmarks/{name}.py --record"
    return set(numbers(path.read_text()))


def test_numbers_are_read_as_written():
    text = "1 566 img/s vs 24.9, 0.80 x, 128x128, X0, fp32, 3.3e-6 (2), 2\u2009017 s, 0.87-0.98"
    assert numbers(text) == ["1 566", "24.9", "0.80", "128", "3.3e-6", "2", "2 017", "0.87", "0.98"]


@pytest.mark.parametrize("row", _params())
def test_every_figure_of_a_performance_table_is_recorded(row: Row):
    assert row.sources, (
        f"README.md line {row.line}, {row.section!r}, row {row.name!r}: names no benchmarks/NAME.py"
    )
    recorded = set().union(*(_recorded(s) for s in row.sources))
    missing = [n for cell in row.cells[1:] for n in numbers(cell) if n not in recorded]
    files = ", ".join(f"benchmarks/results/{s}.txt" for s in row.sources)
    assert not missing, (
        f"README.md line {row.line}, {row.section!r}, row {row.name!r}: "
        f"{', '.join(dict.fromkeys(missing))} not printed in {files}"
    )


def test_every_performance_table_is_marked():
    lines = README.read_text().splitlines()
    unmarked = []
    for chapter, _, i, marker, body in _tables(lines):
        if all("![" in line for line in [lines[i], *body]):
            continue  # a row of pictures
        if marker is None and (chapter == "Performance" or PERFORMANCE_HEADER.search(lines[i])):
            unmarked.append(f"line {i + 1}: {lines[i][:60]}")
    assert not unmarked, "tables of times or sizes without a figures marker: " + "; ".join(unmarked)
    assert len({r.line for r in performance_rows()}) >= 10


@pytest.mark.parametrize(("pattern", "name"), SIZE_STATEMENTS)
def test_sizes_in_the_text_are_recorded(pattern: str, name: str):
    m = re.search(pattern, README.read_text())
    assert m, f"README.md no longer says {pattern!r}: update SIZE_STATEMENTS"
    assert m.group(1) in _recorded(name), f"{m.group(0)!r}: {m.group(1)} not in {name}.txt"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.txt")), ids=lambda p: p.name)
def test_every_results_file_says_what_ran_when_and_on_which_cpu(path: Path):
    lines = path.read_text().splitlines()
    assert len(lines) > 2, f"{path.name}: no output under the header"
    command = re.fullmatch(r"# python benchmarks/(\w+)\.py( .*)?", lines[0])
    assert command and command.group(1) == path.stem, f"{path.name}: first line {lines[0]!r}"
    when = r"# measured \d{4}-\d\d-\d\d \d\d:\d\d UTC on \S.*\(\d+ cores available.*"
    assert re.fullmatch(when, lines[1]), f"{path.name}: second line {lines[1]!r}"


@pytest.mark.parametrize(
    "script", sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")),
    ids=lambda p: p.name,
)  # fmt: skip
def test_every_benchmark_can_record(script: Path):
    assert f'recorded("{script.stem}"' in script.read_text(), f"{script.name}: no --record"
