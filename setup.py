"""Packaging of autoencoder3d: the one place its metadata is declared.

pyproject.toml holds only the build system and tool configuration. The version
is read from autoencoder3d/__init__.py and the core dependencies from
requirements.txt, so each is written once.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "autoencoder3d" / "__init__.py").read_text()).group(1)
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]

# Optional features, each named by the message the package prints when it is missing.
copick = ["copick>=1.0"]
# The tests exercise the copick reader and writer too, so the test extra
# includes copick: `pip install -e ".[test]"` runs the whole suite.
test = ["pytest>=7", "pytest-timeout>=2.1", "pytest-xdist>=3.0", "ruff>=0.17,<0.18"] + copick
extras = {
    # Reading copick projects (dataset build --copick) and writing picks back
    # (export --copick). copick pulls in boto3, s3fs, fsspec and friends, so it
    # is not part of the core install.
    "copick": copick,
    # Keras 3 on JAX instead of TensorFlow (KERAS_BACKEND=jax).
    "jax": ["jax>=0.4"],
    # The test suite and the linter CI runs (.ci/run); ruff is pinned to one
    # minor release because new minors add and change rules.
    "test": test,
    # Everything a developer runs: the tests, the linter, building sdists/wheels.
    "dev": test + ["build>=1.0"],
}

setup(
    name="autoencoder3d",
    version=version,
    description="Unsupervised mining of structures in cryo-electron tomograms (Keras 3 port of Autoencoder3D)",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # An SPDX expression (setuptools >= 77 writes it as License-Expression and
    # deprecates the License :: classifiers, so there is none below).
    license="GPL-3.0-or-later",
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Environment :: Console",
        "Environment :: GPU :: NVIDIA CUDA",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
        "Topic :: Scientific/Engineering :: Image Processing",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Typing :: Typed",
    ],
    keywords=["cryo-electron tomography", "cryo-ET", "subtomogram", "autoencoder", "clustering", "segmentation", "keras"],
    project_urls={
        "Method paper": "https://doi.org/10.1016/j.jsb.2017.12.015",
    },
    python_requires=">=3.10",
    packages=find_packages(include=["autoencoder3d", "autoencoder3d.*"]),
    include_package_data=True,
    package_data={"autoencoder3d": ["py.typed", "report/templates/*"]},
    install_requires=requirements,
    extras_require=extras,
    entry_points={
        "console_scripts": [
            "autoencoder3d=autoencoder3d.cli.main:main",
            "edss3d=autoencoder3d.cli.main:edss3d_main",
        ]
    },
)
