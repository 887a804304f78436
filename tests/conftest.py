import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    """Real speech (Free Spoken Digit Dataset), from the FSDD_ROOT setting (the Makefile sets it
    to ../shared/data/fsdd/recordings)."""
    root = os.environ.get("FSDD_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("FSDD_ROOT is not set to the FSDD recordings folder")
    return Path(root)
