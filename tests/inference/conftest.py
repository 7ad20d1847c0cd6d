"""Fixtures for the inference code: real MXNet models written to temporary directories."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.inference import seed_model, small_ssd

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "files" / "inference_lambda"
# The Lambda zip has both modules at its root and imports them flat; so do the tests.
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))

# Grid cell -> RGB colour of the synthetic scene, and what the small model must find there.
BLUE = (0, 0, 255)
YELLOW = (255, 255, 0)
DIM_BLUE = (102, 102, 162)  # blue_box at ~0.70: above 0.5, below 0.8
SCENE_BOXES = {(1, 2): BLUE, (2, 0): YELLOW, (3, 3): DIM_BLUE}
SCENE_SIZE = (640, 480)  # not square, so pixel boxes check both axes' scaling


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    """Prefix of the hand-weighted small SSD (see small_ssd.py), saved like SageMaker's artefact."""
    return small_ssd.export_small_ssd(tmp_path_factory.mktemp("small-ssd"))


@pytest.fixture(scope="session")
def scene_image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    return small_ssd.write_synthetic_image(path, *SCENE_SIZE, SCENE_BOXES)


@pytest.fixture(scope="session")
def seed_random_model(tmp_path_factory) -> Path:
    """The seed's ResNet-50 SSD512 graph with random weights (~110 MB), made once per session."""
    if not seed_model.seed_files_present():
        pytest.skip(f"seed model graph and images not found in {seed_model.SEED_MODEL_DIR} (EDGEML_SEED_MODEL_DIR)")
    return seed_model.export_seed_with_random_weights(tmp_path_factory.mktemp("seed-ssd512"))
