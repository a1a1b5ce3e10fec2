"""The README's ```python blocks run as they stand, so the README cannot drift from the code.

The blocks run in order in one namespace, as a reader pasting them into one session
would, on the current backend. The line right before a block may hold a marker:

* `<!-- no-test -->`: not run (for a block that needs big data or a GPU; use sparingly);
* `<!-- backend: torch -->` (or `tensorflow`, `jax`): run on that backend only.

The quick start trains for 30 epochs; here it trains for 3 (`BUDGET`: the code is the
same, `tests/test_learning.py` checks what the training achieves).

Each block's standard output is checked to be non-empty where it prints, and a failure
names the block's first line in README.md.
"""

import contextlib
import io
import os
import re

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"<!--\s*(no-test|backend:\s*(\w+))\s*-->")
BUDGET = {"epochs=30)": "epochs=3)"}  # text replaced in the blocks before they run


def python_blocks(path):
    """`[(first line number, marker line or "", code)]` of the ```python blocks of `path`."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == "```")
            marker = lines[i - 1].strip() if i and MARKER.fullmatch(lines[i - 1].strip()) else ""
            blocks.append((start + 1, marker, "\n".join(lines[start:end]) + "\n"))
            i = end
        i += 1
    return blocks


def test_the_markers_are_known():
    blocks = python_blocks(os.path.join(ROOT, "README.md"))
    assert len(blocks) >= 8
    for line, marker, _ in blocks:
        backend = MARKER.fullmatch(marker).group(2) if marker else None
        assert backend in (None, "tensorflow", "jax", "torch"), (line, marker)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a block writes by a relative path lands here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__readme__"}
    ran = 0
    for line, marker, code in python_blocks(os.path.join(ROOT, "README.md")):
        if marker == "<!-- no-test -->":
            continue
        match = MARKER.fullmatch(marker) if marker else None
        if match and match.group(2) and match.group(2) != keras.backend.backend():
            continue
        for text, replacement in BUDGET.items():
            code = code.replace(text, replacement)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"README.md, block at line {line}", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - any failure of a block, named by its line
            pytest.fail(f"README.md, the block at line {line} fails: {type(e).__name__}: {e}")
        if "print(" in code:
            assert out.getvalue().strip(), f"README.md, the block at line {line} printed nothing"
        ran += 1
    assert ran >= 7
