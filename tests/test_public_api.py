"""The apps are examples of the public API: they import no private `keras_triplet` name.

Ruff's PLC2701 catches `from keras_triplet._x import y` and `from keras_triplet.m import _y`
in `apps/`; this test also catches plain `import keras_triplet._x` and attribute access such
as `keras_triplet._x` or `kt._x`, which the linter does not see.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
APP_FILES = sorted((ROOT / "apps").rglob("*.py"))


def _private_part(dotted):
    return next((part for part in dotted.split(".") if part.startswith("_") and part != "__init__"), None)


def private_uses(source):
    """(line, text) of every private `keras_triplet` name that `source` imports or reads."""
    found, aliases = [], {"keras_triplet"}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "keras_triplet":
                    aliases.add(alias.asname or "keras_triplet")
                    if _private_part(alias.name):
                        found.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "keras_triplet":
            names = [f"{node.module}.{a.name}" for a in node.names]
            private = [n for n in names if _private_part(n)]
            if private:
                found.append((node.lineno, ", ".join(private)))
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_detector_sees_every_form():
    source = (
        "import keras_triplet._backend\n"
        "import keras_triplet as kt\n"
        "from keras_triplet._validation import check_labels\n"
        "from keras_triplet.metrics import _hidden\n"
        "kt._io\n"
        "from keras_triplet import losses\n"
        "kt.__version__\n"
    )
    assert [line for line, _ in private_uses(source)] == [1, 3, 4, 5]


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_apps_use_the_public_api_only(path):
    uses = private_uses(path.read_text())
    assert not uses, f"{path.relative_to(ROOT)} uses private keras_triplet names: {uses}"
