"""The cores stay cores: importing every module of the policy guard, or of the SIP core, in a
fresh interpreter loads nothing of the application around them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
modules = [m.name for m in pkgutil.walk_packages(package.__path__, sys.argv[1] + ".")]
for name in modules:
    importlib.import_module(name)
print(json.dumps({"modules": modules,
                  "loaded": sorted(n for n in sys.modules if n.startswith("softphone"))}))
"""


def loaded_by(package: str) -> tuple[list[str], list[str]]:
    """(every module of ``package``, every softphone module loaded once they are imported)."""
    out = subprocess.run([sys.executable, "-c", PROBE, package], capture_output=True, text=True,
                         timeout=60, check=True)
    result = json.loads(out.stdout)
    return result["modules"], result["loaded"]


@pytest.mark.parametrize(("package", "minimum"), [
    ("softphone.policy", {"config", "guard", "admission", "ledger", "tomlkeys"}),
    ("softphone.sip", {"core", "transport", "registration", "auth", "dialog"}),
])
def test_a_core_imports_nothing_of_the_application(package: str, minimum: set[str]) -> None:
    modules, loaded = loaded_by(package)
    assert minimum <= {m.rsplit(".", 1)[1] for m in modules}, modules
    outside = [m for m in loaded if m != "softphone" and m != package
               and not m.startswith(package + ".")]
    assert outside == [], f"{package} pulls in {outside}"
