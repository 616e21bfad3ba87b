"""What pyproject.toml cannot say: the top-level ``data_manifests/`` folder (committed split lists and
corpus fix-ups) travels inside the wheel as ``talkface/data_manifests``, so an install that is not
editable finds the split lists (:func:`talkface.store.splits.data_manifests_dir`). The package data
is declared here too: pyproject.toml's would replace this list instead of adding to it."""

from pathlib import Path

from setuptools import find_packages, setup

MANIFESTS = Path("data_manifests")
folders = sorted(p for p in [MANIFESTS, *MANIFESTS.rglob("*")] if p.is_dir())
manifest_packages = {"talkface." + ".".join(p.parts): str(p) for p in folders}

setup(
    packages=find_packages(include=["talkface*"]) + list(manifest_packages),
    package_dir=manifest_packages,
    package_data={
        "talkface": ["data/*", "data/demo/grid/*", "data/demo/grid/s1/*", "data/demo/grid/alignments/s1/*",
                     "data/pretrained/*", "data/pretrained/*/*.json",
                     "data/pretrained/*/checkpoints/*"],
        **{name: ["*.csv", "*.md", "*.txt", "*.json", "*.tsv"] for name in manifest_packages},
    },
)
