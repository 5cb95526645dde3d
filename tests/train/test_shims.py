"""The CPU shims: megatron-core's CUDA-assuming helpers work on CPU, and only there."""

import pytest
import torch

from euroflow.train import shims

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the shims are inactive with a GPU")


def test_rng_tracker_forks_the_cpu_generator_and_restores_it():
    from megatron.core import tensor_parallel

    assert shims.apply() is True
    tensor_parallel.model_parallel_cuda_manual_seed(7, tp_rank=0, ep_rank=0, etp_rank=0, force_reset_rng=True)
    tracker = tensor_parallel.get_cuda_rng_tracker()
    before = torch.get_rng_state()
    with tracker.fork():
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with tracker.fork():
        again = torch.rand(3)
    assert not torch.equal(inside, again)  # the forked stream advanced
    tensor_parallel.model_parallel_cuda_manual_seed(7, tp_rank=0, ep_rank=0, etp_rank=0, force_reset_rng=True)
    with tensor_parallel.get_cuda_rng_tracker().fork():
        assert torch.equal(torch.rand(3), inside)  # reseeding reproduces it


def test_grad_clipping_runs_on_cpu_fp32_grads():
    from megatron.core.optimizer import optimizer

    shims.apply()
    params = [torch.nn.Parameter(torch.ones(4)) for _ in range(2)]
    for p in params:
        p.grad = torch.full((4,), 3.0)
    optimizer.clip_grad_by_total_norm_fp32(params, max_norm=1.0, total_norm=12.0)
    assert torch.allclose(params[0].grad, torch.full((4,), 0.25), atol=1e-6)
    doubles = [torch.nn.Parameter(torch.ones(4, dtype=torch.float64))]
    doubles[0].grad = torch.ones(4, dtype=torch.float64)
    with pytest.raises(AssertionError):  # the fp32 check of megatron's assert is kept
        optimizer.clip_grad_by_total_norm_fp32(doubles, max_norm=1.0, total_norm=12.0)
    assert torch.cuda.current_device() == torch.device("cpu")


def test_cuda_literals_and_current_device_land_on_cpu():
    from megatron.core.optimizer.clip_grads import get_grad_norm_fp32
    from megatron.core.transformer.utils import get_default_causal_mask

    from euroflow.train.loop import single_process_group

    shims.apply()
    mask = get_default_causal_mask(3)
    assert mask.device.type == "cpu" and mask.tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    with single_process_group():
        assert get_grad_norm_fp32([torch.full((4,), 2.0), torch.full((5,), 0.0)]) == pytest.approx(4.0)
