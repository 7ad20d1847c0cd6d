"""The seed's real SSD512 graph (ResNet-50, SageMaker deploy artefact) with random weights.

Only the trained ``-0000.params`` is missing from the seed; random parameters of
the right shapes time exactly like trained ones (detections are then meaningless).
The symbol file is copied byte for byte, so loading it goes through the same
v1.4.0 -> 1.9 upgrade as on a device.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mxnet as mx
import numpy as np

# The seed's graph and frames are kept in the repo (MIT-0, see SOURCE.md there), so a fresh clone tests them.
SEED_MODEL_DIR = Path(
    os.environ.get("EDGEML_SEED_MODEL_DIR") or Path(__file__).resolve().parents[1] / "data" / "seed-model"
)
SEED_PREFIX_NAME = "deploy_model_algo_1"
SEED_IMAGES = ("blue_box_1_000133.jpg", "yellow_box_1_000086.jpg")
INPUT_SHAPE = (1, 3, 512, 512)


def seed_files_present() -> bool:
    needed = [f"{SEED_PREFIX_NAME}-symbol.json", *SEED_IMAGES]
    return all((SEED_MODEL_DIR / name).is_file() for name in needed)


def seed_images() -> list[Path]:
    return [SEED_MODEL_DIR / name for name in SEED_IMAGES]


def export_seed_with_random_weights(directory: Path, seed: int = 0) -> Path:
    """Write ``deploy_model_algo_1-{symbol.json,0000.params}`` (+ hyperparams.json) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    source_symbol = SEED_MODEL_DIR / f"{SEED_PREFIX_NAME}-symbol.json"
    symbol = mx.sym.load(str(source_symbol))
    mx.random.seed(seed)
    np.random.seed(seed)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(for_training=False, data_shapes=[("data", INPUT_SHAPE)])
    # BatchNorm statistics take their "zero"/"one" initialisers from the graph's own attributes.
    module.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    arg_params, aux_params = module.get_params()
    prefix = directory / SEED_PREFIX_NAME
    mx.model.save_checkpoint(str(prefix), 0, symbol, arg_params, aux_params)
    shutil.copyfile(source_symbol, f"{prefix}-symbol.json")
    hyperparams = SEED_MODEL_DIR / "hyperparams.json"
    if hyperparams.is_file():
        shutil.copyfile(hyperparams, directory / "hyperparams.json")
    return prefix
