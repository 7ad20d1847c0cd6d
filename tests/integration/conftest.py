"""Fixtures shared by the integration tests of the detector roles."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[2] / "files" / "inference_lambda"


@pytest.fixture(scope="module")
def model_archive(tmp_path_factory) -> Path:
    """The small real SSD, saved like SageMaker's artefact and packed as the detector roles expect."""
    from tests.inference.small_ssd import export_small_ssd

    folder = tmp_path_factory.mktemp("model")
    prefix = export_small_ssd(folder / "artefact")
    archive = folder / "small_ssd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for suffix in ("-symbol.json", "-0000.params"):
            path = Path(str(prefix) + suffix)
            tar.add(path, arcname=path.name)
    return archive


@pytest.fixture
def sources(tmp_path) -> Path:
    """A copy of the inference code that a test may change."""
    copy = tmp_path / "inference_lambda"
    shutil.copytree(SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy
