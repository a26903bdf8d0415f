import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "autoencoder3d" / "__init__.py").read_text()).group(1)
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="autoencoder3d",
    version=version,
    description="Unsupervised mining of structures in cryo-electron tomograms (Keras 3 port of Autoencoder3D)",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["autoencoder3d", "autoencoder3d.*"]),
    include_package_data=True,
    package_data={"autoencoder3d.report": ["templates/*"]},
    install_requires=requirements,
    extras_require={"test": ["pytest>=7"]},
    entry_points={
        "console_scripts": [
            "autoencoder3d=autoencoder3d.cli.main:main",
            "edss3d=autoencoder3d.cli.main:edss3d_main",
        ]
    },
)
