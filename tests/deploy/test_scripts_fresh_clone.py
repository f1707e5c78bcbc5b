"""The README's two commands and their documented variants from a fresh clone: argument
handling of scripts/quickstart (e.g. --short) and scripts/test (pytest arguments)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    dst = tmp_path_factory.mktemp("fresh") / "llmfleet"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dst)], check=True, timeout=120)
    return dst


def run(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV"))}
    env["PYTHON"] = sys.base_prefix + "/bin/python3" if os.path.exists(sys.base_prefix + "/bin/python3") \
        else sys.executable
    return subprocess.run(list(args), cwd=clone, env=env, capture_output=True, text=True, timeout=900)


def test_quickstart_passes_its_arguments_to_llmfleet_not_pip(clone: Path) -> None:
    res = run(clone, "./scripts/quickstart", "--short", "--help")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "install failed" not in res.stderr and "--short" in res.stdout
    assert (clone / ".venv" / ".llmfleet-installed").exists()


def test_test_script_passes_its_arguments_to_pytest(clone: Path) -> None:
    res = run(clone, "./scripts/test", "--collect-only", "-q", "tests/schemas/test_messages.py")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "test_messages.py::" in res.stdout and (clone / ".venv" / ".llmfleet-installed-test").exists()
