"""Installs the ``returnn`` package and the ``rnn`` console script."""

import importlib.metadata
import os

from setuptools import find_packages, setup

# Any of these provides the ``tensorflow`` module; requiring plain "tensorflow" on top of one would
# install a second, conflicting copy (e.g. over tensorflow-cpu on a CPU-only machine).
_TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos", "tf-nightly")


def _tensorflow_requirement() -> list:
    for name in _TF_DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
            return []
        except importlib.metadata.PackageNotFoundError:
            continue
    return ["tensorflow>=2.16"]


def _read(name: str) -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), encoding="utf-8") as f:
        return f.read()


setup(
    name="returnn",
    version="0.1.0",
    description="Config-driven recurrent networks on TensorFlow 2, compatible with RETURNN configs and HDF files",
    long_description=_read("README.rst"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["returnn", "returnn.*"]),
    package_data={"returnn.tf.native_op": ["*.cc", "*.cu", "*.h"]},
    install_requires=["numpy", "h5py", "pyyaml"] + _tensorflow_requirement(),
    extras_require={"test": ["pytest"], "cpu": ["tensorflow-cpu>=2.16"]},
    entry_points={"console_scripts": ["rnn = returnn.__main__:main"]},
    scripts=[],
)
