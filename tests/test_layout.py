"""The one import root: the standard library's codecs is never shadowed by ours."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_stdlib_codecs_is_not_shadowed() -> None:
    import codecs

    import softphone.codecs

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(codecs.__file__).resolve().parent == stdlib
    assert Path(softphone.codecs.__file__).resolve().parent == ROOT / "codecs"
    assert hasattr(codecs, "lookup")


def test_cli_version() -> None:
    out = subprocess.run([sys.executable, "-m", "softphone", "--version"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.startswith("softphone ")


@pytest.mark.timeout(600)
def test_clean_clone_fresh_venv(tmp_path: Path) -> None:
    """A clean clone installed into a fresh venv (no editable magic) keeps the mapping."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    if not (clone / "setup.py").exists():
        pytest.skip("nothing committed yet")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    # Not editable: a real wheel built in pip's isolated build environment.
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(clone)], check=True, timeout=300,
                   env=env)
    code = (
        "import codecs, softphone.codecs, softphone.policy, softphone.native, sysconfig, os;"
        "assert os.path.dirname(codecs.__file__) == sysconfig.get_paths()['stdlib'], codecs.__file__;"
        "assert 'site-packages' in softphone.codecs.__file__, softphone.codecs.__file__;"
        "print(softphone.native.abi())"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().isdigit()
