import importlib.util
import sys
from pathlib import Path

import pytest


def load_fixture_module():
    """``tiny_model_fixture`` is shared with tests/quantize, imported once under one name."""
    name = "euroflow_tests_tiny_model_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("tiny_model_fixture.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, data_root) -> Path:
    return load_fixture_module().shared_model_dir(tmp_path_factory, data_root)
