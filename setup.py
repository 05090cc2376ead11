import re
from pathlib import Path

from setuptools import find_packages, setup

# The version lives in the package alone; reading the file (not importing it) needs no dependency.
VERSION = re.search(
    r'__version__ = "([^"]+)"',
    Path(__file__).with_name("petit").joinpath("__init__.py").read_text(),
).group(1)

setup(
    name="petit",
    version=VERSION,
    description="A small, dependable job orchestrator for one machine",
    packages=find_packages(include=["petit", "petit.*"]),
    # the dashboard's page and files, served by the API process (petit/api/dashboard.py)
    package_data={"petit.api": ["static/**/*"]},
    python_requires=">=3.11",
    install_requires=[
        "tornado>=6.3",
        "psutil>=5.9",
        "tinydb>=4.8",
        "pyyaml>=6.0",
        "docopt-ng>=0.9",
        "prometheus-client>=0.20",
    ],
    extras_require={
        "test": [
            "cronsim==2.8",  # the independent evaluator of tests/test_cron_differential.py
            "pytest>=7.4",
            "pytest-timeout>=2.2",
            "pytest-xdist>=3.5",
            "ruff>=0.6",
            "selenium>=4.20",
        ]
    },
    entry_points={"console_scripts": ["petit = petit.cli.main:main"]},
)
