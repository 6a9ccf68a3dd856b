"""The native tests again, on a build with -fsanitize=address,undefined.

The extension is compiled into a temporary directory with the shipped flags plus the
sanitizers (native/build_native.py make_builder), then ``pytest tests/native -m "not
sanitize"`` runs in a subprocess that loads it through SOFTPHONE_NATIVE_MODULE, with the
sanitizer runtimes preloaded (the Python binary itself is not instrumented). Any
out-of-bounds access, use after free, signed overflow or misaligned access aborts that run.
Hypothesis example counts are scaled down there (SOFTPHONE_HYPOTHESIS_EXAMPLES).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from softphone.native import module_path

ROOT = Path(__file__).resolve().parents[2]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]


def _runtime(name: str) -> str | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    found = subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True, text=True,
                           check=False).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


def test_native_module_override_is_the_one_loaded() -> None:
    """Under the sanitizer run this proves the instrumented build is what the tests used."""
    override = os.environ.get("SOFTPHONE_NATIVE_MODULE")
    if override:
        assert Path(module_path()).resolve() == Path(override).resolve()
    else:
        assert Path(module_path()).name.startswith("_native")


@pytest.mark.sanitize
@pytest.mark.timeout(600)
@pytest.mark.parametrize("build", ["native", "portable"])
def test_native_suite_under_address_and_undefined_sanitizers(
        build: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``native`` is the shipped -march=native build (AVX2 kernels on x86); ``portable``
    (SOFTPHONE_PORTABLE=1, baseline x86-64) runs the SSE2 / plain C kernels the same way."""
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    if asan is None or ubsan is None:
        pytest.skip("gcc with libasan/libubsan is needed for the sanitizer build")
    from softphone.native.build_native import make_builder

    monkeypatch.setenv("SOFTPHONE_PORTABLE", "1" if build == "portable" else "0")
    builder = make_builder(module="_native_asan", extra_cflags=[*SANITIZE, "-g"],
                           extra_link=SANITIZE, absolute_sources=True)
    so_path = Path(builder.compile(tmpdir=str(tmp_path), verbose=False))
    assert so_path.is_file()
    needed = subprocess.run(["ldd", str(so_path)], capture_output=True, text=True,
                            check=False).stdout
    assert "libasan" in needed and "libubsan" in needed, needed

    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": f"{asan}:{ubsan}",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "SOFTPHONE_NATIVE_MODULE": str(so_path),
        "SOFTPHONE_HYPOTHESIS_EXAMPLES": "30",
    })
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/native", "-m", "not sanitize", "-q",
         "-p", "no:cacheprovider", "--timeout=300"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=560, check=False)
    output = proc.stdout + proc.stderr
    tail = output[-6000:]
    assert "AddressSanitizer" not in output, tail
    assert "runtime error" not in output, tail
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout, tail
