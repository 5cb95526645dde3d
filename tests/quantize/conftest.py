import importlib.util
import sys
from pathlib import Path

import pytest


def load_fixture_module():
    """The tiny model builder lives in tests/evaluate/tiny_model_fixture.py, imported once under one name."""
    name = "euroflow_tests_tiny_model_fixture"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "evaluate" / "tiny_model_fixture.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, data_root) -> Path:
    return load_fixture_module().shared_model_dir(tmp_path_factory, data_root)


@pytest.fixture(scope="session")
def tiny_tied_model_dir(tmp_path_factory, data_root) -> Path:
    return load_fixture_module().shared_model_dir(tmp_path_factory, data_root, tied=True, train_steps=0)
