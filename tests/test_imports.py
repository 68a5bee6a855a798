"""Importing tuneforge, or asking the CLI for help, stays cheap: no torch, Ray or MLflow."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "mlflow", "sklearn", "optuna")

_HELP = "from tuneforge.platform.cli import main\ntry:\n    main({args})\nexcept SystemExit:\n    pass"
SCRIPTS = {
    "import tuneforge": "import tuneforge",
    "tuneforge --help": _HELP.format(args=["--help"]),
    "tuneforge search --help": _HELP.format(args=["search", "--help"]),
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_no_heavy_dependency_is_imported(script: str) -> None:
    check = f"{script}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "loaded:"


_LAYERS_ABOVE_THE_BOTTOM = ("tuneforge.platform", "tuneforge.trainables", "tuneforge.dashboards",
                            "tuneforge.search_spaces")
"""What the bottom modules, which every layer imports, must not import."""
LAYERS = {  # package or module: the tuneforge packages it must not import (imports point down)
    "trainables": ("tuneforge.platform", "tuneforge.dashboards"),
    "search_spaces": ("tuneforge.platform", "tuneforge.trainables", "tuneforge.dashboards"),
    **dict.fromkeys(("_checks.py", "_tracking_uri.py", "_paths.py"), _LAYERS_ABOVE_THE_BOTTOM),
    "dashboards": ("tuneforge.trainables", "tuneforge.platform"),
}


@pytest.mark.parametrize(("package", "forbidden"), LAYERS.items(), ids=LAYERS.keys())
def test_imports_point_down(package: str, forbidden: tuple[str, ...]) -> None:
    import ast
    from pathlib import Path

    import tuneforge

    root = Path(tuneforge.__file__).parent / package
    for path in [root] if root.suffix == ".py" else root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad = [name for name in names if name.startswith(forbidden)]
            assert not bad, f"{path} imports {bad}"
