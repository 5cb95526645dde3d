import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("EUROFLOW_DATA", REPO_ROOT.parent / "shared" / "data" / "multilingual"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "parallel" / "ntrex128").is_dir():
        pytest.fail(f"the shared multilingual bundle is expected at {DATA_ROOT} (set EUROFLOW_DATA)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
