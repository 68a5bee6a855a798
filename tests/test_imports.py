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
