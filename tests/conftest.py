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


@pytest.fixture(scope="session")
def small_pipeline_config(repo_root, data_root):
    """``make(out, name, langs, train_steps)``: workflow/configs/tiny.yaml shrunk for a whole-pipeline test,
    writing into ``out``; the test adjusts the returned dict and writes it where Snakemake reads it."""
    import yaml

    def make(out: Path, name: str, langs: list[str], train_steps: int) -> dict:
        cfg = yaml.safe_load((repo_root / "workflow" / "configs" / "tiny.yaml").read_text())
        cfg["run"]["name"] = name
        cfg["paths"] = {"data_root": str(data_root), "results": str(out), "provenance_db": str(out / "prov.sqlite")}
        cfg["languages"] = langs
        cfg["tokenizer"]["vocab_size"] = 1000
        cfg["model"].update(hidden_size=64, ffn_hidden_size=176, seq_length=128)
        cfg["training"].update(train_steps=train_steps, checkpoint_interval=train_steps // 2, warmup_steps=train_steps // 10,
                               global_batch_size=8, micro_batch_size=4)
        cfg["evaluation"]["bpb_languages"] = langs
        # lm-eval and the checkpoint evaluations are the e2e test's to switch on (they cost minutes elsewhere)
        cfg["evaluation"]["lm_eval"] = {"sets": []}
        cfg["evaluation"]["during_training"] = {"every_n_checkpoints": 0}
        return cfg

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, data_root) -> Path:
    """A tiny trained Llama with the contract's tokenizer, laid out like `euroflow train export-hf` output."""
    from tiny_model import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"), data_root)


@pytest.fixture(scope="session")
def tiny_tied_model_dir(tmp_path_factory, data_root) -> Path:
    from tiny_model import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("tiny-llama-tied"), data_root, tied=True, train_steps=0)


@pytest.fixture(scope="session")
def tiny_gguf_files(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """F16 and Q8_0 GGUF of the tiny model, exported once for every test that reads them."""
    from euroflow.quantize.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("tiny-gguf")
    files = {qtype: out / f"tiny-{qtype}.gguf" for qtype in ("F16", "Q8_0")}
    for qtype, path in files.items():
        export_gguf(tiny_model_dir, path, qtype)
    return files
