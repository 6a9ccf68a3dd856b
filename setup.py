"""Package layout and the native extension.

The top-level folders are fixed by the design card (softphone/, policy/, codecs/, native/),
but there is one import root: policy/ imports as ``softphone.policy``, codecs/ as
``softphone.codecs`` and native/ as ``softphone.native``, so nothing shadows the standard
library's ``codecs``. setuptools' ``package_dir`` does the mapping; the cffi extension
``softphone.native._native`` is compiled from native/src at install time.
"""

from setuptools import find_packages, setup

ROOTS = {
    "softphone": "softphone",
    "softphone.policy": "policy",
    "softphone.codecs": "codecs",
    "softphone.native": "native",
    "softphone.configs": "configs",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for package, folder in ROOTS.items():
    package_dir[package] = folder
    packages.append(package)
    for sub in find_packages(folder, exclude=["tests", "tests.*"]):
        packages.append(f"{package}.{sub}")
        package_dir[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(
    packages=packages,
    package_dir=package_dir,
    cffi_modules=["native/build_native.py:ffibuilder"],
)
