"""No module of the package is over :data:`MAX_LINES` lines (issue 13): split a growing one by concern.

A module that grows past the limit is split into cohesive private modules, its public import path kept (a package
whose ``__init__`` re-exports, or the old module re-exporting), as ``brainpipe.scan`` and ``brainpipe.io.fmri`` were.
"""

from __future__ import annotations

from pathlib import Path

#: the most lines a module of ``src/brainpipe`` may have
MAX_LINES = 650

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "brainpipe"


def _line_counts() -> dict[str, int]:
    return {
        str(p.relative_to(PACKAGE.parent)): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def test_the_line_count_sees_every_module():
    counts = _line_counts()
    assert "brainpipe/__init__.py" in counts and "brainpipe/scan/_walk.py" in counts  # subpackages too
    assert counts["brainpipe/io/_registry.py"] > 100  # lines, not bytes or definitions


def test_no_module_is_over_the_limit():
    offenders = {name: n for name, n in _line_counts().items() if n > MAX_LINES}
    listed = "\n".join(
        f"  src/{name}: {n} lines" for name, n in sorted(offenders.items(), key=lambda kv: -kv[1])
    )
    assert not offenders, (
        f"{len(offenders)} module(s) over {MAX_LINES} lines; split each by concern into private modules, "
        f"keeping its public import path:\n{listed}"
    )
