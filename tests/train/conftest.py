import pytest
import torch

import train_corpus as corpus


@pytest.fixture(scope="session", autouse=True)
def one_cpu_thread():
    """One intra-op thread: on a shared 2-core machine a second OpenMP thread mostly waits (10x slower
    tiny steps); exact-equality tests also need every run of a comparison to use the same count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def train_inputs(tmp_path_factory, data_root) -> dict:
    """Tokenizer dir + blend.json over indexed NTREX datasets (4 languages, 1k vocabulary)."""
    return corpus.build(data_root, tmp_path_factory.mktemp("train-inputs"))


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, train_inputs) -> dict:
    """One uninterrupted 40-step run of the tiny test config; the baseline the other tests compare to."""
    from euroflow.train.loop import pretrain

    out = tmp_path_factory.mktemp("reference-run")
    summary = pretrain(corpus.tiny_config(), train_inputs["blend"], train_inputs["tokenizer"], out)
    return {"out": out, "summary": summary, "log": corpus.read_log(out)}


@pytest.fixture
def model_parallel():
    """megatron-core parallel state of one process (TP = PP = DP = 1), for building modules."""
    from megatron.core import parallel_state, tensor_parallel

    from euroflow.train import shims
    from euroflow.train.loop import single_process_group

    shims.apply()
    with single_process_group():
        parallel_state.initialize_model_parallel(1, 1)
        tensor_parallel.model_parallel_cuda_manual_seed(0, force_reset_rng=True)
        try:
            yield
        finally:
            parallel_state.destroy_model_parallel()
