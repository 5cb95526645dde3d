"""The distributed optimizer with overlapped communication, activation recomputation, sequence
parallelism, compiled layers and resuming on another TP / DP layout: each against the one-process
reference run on gloo."""

from __future__ import annotations

import shutil

import pytest

import train_corpus as corpus
from euroflow.errors import EuroflowError
from euroflow.train.checkpoint import iteration_dir
from euroflow.train.loop import pretrain

DISTRIBUTED = {"distributed_optimizer": True, "overlap_grad_reduce": True, "overlap_param_gather": True,
               "ddp_bucket_size": 20_000}  # several buckets in the tiny model (about 150k parameters)


def losses(log: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log]


def test_the_distributed_optimizer_matches_one_process_and_resumes_exactly(tmp_path, train_inputs, reference_run):
    config = corpus.tiny_config(nproc=2, checkpoint_interval=7, **DISTRIBUTED)
    uninterrupted = tmp_path / "uninterrupted"
    summary = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], uninterrupted, stop_after_step=14)
    assert summary["data_parallel_size"] == 2 and summary["last_step"] == 14
    log = corpus.read_log(uninterrupted)
    # Adam's state split over the two ranks, gradients reduce-scattered and parameters all-gathered bucket by bucket
    assert losses(log) == pytest.approx(losses(reference_run["log"][:14]), abs=1e-5)

    resumed = tmp_path / "resumed"  # the same run, stopped after its step-7 checkpoint
    shutil.copytree(uninterrupted, resumed)
    shutil.rmtree(iteration_dir(resumed / "checkpoints", 14))
    summary = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], resumed, stop_after_step=14)
    assert summary["resumed_from"] == 7
    again = corpus.read_log(resumed)
    assert [e["step"] for e in again] == list(range(1, 15))
    # exact: moments, master weights and Adam's step come back (megatron-core 0.16 needs two mends for
    # that, in euroflow.train.checkpoint: bucket offsets, and one step tensor per parameter)
    assert [(e["loss"], e["grad_norm"]) for e in again] == [(e["loss"], e["grad_norm"]) for e in log]


@pytest.mark.parametrize("before,after", [
    ({"tensor_model_parallel_size": 2}, {}),  # TP 2 / DP 1, then TP 1 / DP 2
    ({}, {"tensor_model_parallel_size": 2, "sequence_parallel": True}),  # and the reverse
], ids=["tp2-to-dp2", "dp2-to-tp2"])
def test_a_checkpoint_resumes_on_another_layout(before, after, tmp_path, train_inputs, reference_run):
    """A partner's next allocation may have another node count: dist_checkpointing reshards model and
    optimizer state (the distributed optimizer's included) to the new layout."""
    first = corpus.tiny_config(nproc=2, checkpoint_interval=10, distributed_optimizer=True, ddp_bucket_size=20_000, **before)
    summary = pretrain(first, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=10)
    assert summary["last_step"] == 10
    second = corpus.tiny_config(nproc=2, checkpoint_interval=10, distributed_optimizer=True, **after)  # one bucket now
    summary = pretrain(second, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=16)
    assert summary["resumed_from"] == 10 and summary["data_parallel_size"] == (1 if after else 2)
    log = corpus.read_log(tmp_path)
    assert [e["step"] for e in log] == list(range(1, 17))
    assert losses(log) == pytest.approx(losses(reference_run["log"][:16]), abs=1e-4)


def test_sequence_parallel_matches_one_process_and_exports(tmp_path, train_inputs, reference_run):
    from euroflow.train.export_hf import export_hf

    config = corpus.tiny_config(nproc=2, tensor_model_parallel_size=2, sequence_parallel=True, checkpoint_interval=12)
    pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=12)
    # the norms see half the sequence on each rank; their weights' gradients are all-reduced over TP
    assert losses(corpus.read_log(tmp_path)) == pytest.approx(losses(reference_run["log"][:12]), abs=1e-4)
    # the export runs in one process (TP 1), where sequence parallelism cannot be
    check = export_hf(config, tmp_path / "checkpoints", train_inputs["tokenizer"], tmp_path / "hf")
    assert check["passed"] and check["iteration"] == 12


def test_compiled_layers_follow_the_same_curve(tmp_path, train_inputs, reference_run):
    config = corpus.tiny_config(compile=True)
    pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=8)
    assert losses(corpus.read_log(tmp_path)) == pytest.approx(losses(reference_run["log"][:8]), abs=1e-5)


@pytest.mark.parametrize("recompute,recomputed", [("none", None), ("selective", "core_attention"), ("full", "layer")])
def test_recomputation_runs_the_forward_again_in_the_backward_pass(recompute, recomputed, model_parallel):
    import torch

    from euroflow.train.model import build_model

    config = corpus.tiny_config(recompute=recompute)
    gpt = build_model(config, vocab_size=1000)
    calls = {"core_attention": 0, "layer": 0}
    for layer in gpt.decoder.layers:
        layer.register_forward_hook(lambda *_: calls.__setitem__("layer", calls["layer"] + 1))
        layer.self_attention.core_attention.register_forward_hook(
            lambda *_: calls.__setitem__("core_attention", calls["core_attention"] + 1))
    tokens = torch.randint(0, 1000, (2, 64), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(64).repeat(2, 1)
    loss = gpt(tokens, positions, None, labels=tokens).sum()
    forward = dict(calls)
    assert forward == {"core_attention": 2, "layer": 2}  # two layers, one forward each
    loss.backward()
    assert {k: v - forward[k] for k, v in calls.items()} == {k: 2 if recomputed in (k, "layer") else 0 for k in calls}


@pytest.mark.parametrize("recompute", ["selective", "full"])
def test_recomputation_keeps_the_loss_curve(recompute, tmp_path, train_inputs, reference_run):
    config = corpus.tiny_config(recompute=recompute)
    pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=10)
    assert losses(corpus.read_log(tmp_path)) == pytest.approx(losses(reference_run["log"][:10]), abs=1e-6)


@pytest.mark.parametrize("training,message", [
    ({"sequence_parallel": True}, "training.sequence_parallel: needs tensor_model_parallel_size > 1"),
    ({"overlap_param_gather": True}, "training.overlap_param_gather: needs distributed_optimizer: true"),
    ({"recompute": "some"}, "training.recompute"),
    ({"reshardable_checkpoints": "data_parallel", "distributed_optimizer": True}, "data_parallel needs distributed_optimizer: true and a ddp_bucket_size"),
])
def test_parallelism_settings_that_cannot_work_are_refused_in_one_line(training, message):
    with pytest.raises(EuroflowError, match=message):
        corpus.tiny_config(**training)


def test_data_parallel_only_checkpoints_resume_at_the_same_model_parallelism_and_name_it_otherwise(tmp_path, train_inputs, reference_run):
    """reshardable_checkpoints: data_parallel saves each rank's optimizer shard as it is (no gather):
    a resume may change DP, and one that changes TP is refused in one line."""
    first = corpus.tiny_config(nproc=2, checkpoint_interval=10, distributed_optimizer=True, reshardable_checkpoints="data_parallel",
                               ddp_bucket_size=20_000)
    pretrain(first, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=10)
    tp2 = corpus.tiny_config(nproc=2, checkpoint_interval=10, distributed_optimizer=True, tensor_model_parallel_size=2)
    with pytest.raises(EuroflowError, match=r"saved with training.reshardable_checkpoints: data_parallel at TP x PP = 1 x 1; "
                                            r"resume with that TP x PP"):
        pretrain(tp2, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=12)
    plain = corpus.tiny_config(checkpoint_interval=10)  # the plain optimizer cannot read the distributed one's state
    with pytest.raises(EuroflowError, match=r"saved with training.distributed_optimizer: true, .* resume with distributed_optimizer: true"):
        pretrain(plain, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=12)
    one = corpus.tiny_config(checkpoint_interval=10, distributed_optimizer=True, reshardable_checkpoints="data_parallel",
                             ddp_bucket_size=20_000)
    summary = pretrain(one, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=14)  # DP 2 -> 1
    assert summary["resumed_from"] == 10
    assert losses(corpus.read_log(tmp_path)) == pytest.approx(losses(reference_run["log"][:14]), abs=1e-5)


def test_megatrons_torch_fusions_follow_the_same_curve(tmp_path, train_inputs, reference_run):
    """Fused SwiGLU, bias-dropout-add and the vocab-parallel cross entropy, at TP 2."""
    config = corpus.tiny_config(nproc=2, tensor_model_parallel_size=2, fusions=True)
    pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=8)
    assert losses(corpus.read_log(tmp_path)) == pytest.approx(losses(reference_run["log"][:8]), abs=1e-4)
