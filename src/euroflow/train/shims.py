"""The few patches that let megatron-core run its normal code path on a CPU-only machine.

Megatron-core assumes a CUDA device in a handful of places. On a machine without one,
``apply()`` redirects exactly those to the CPU; with a GPU it does nothing, so GPU runs
execute megatron-core unmodified. All patches live in this one module.
"""

from __future__ import annotations

import functools

import torch

_applied = False


def needed() -> bool:
    return not torch.cuda.is_available()


def apply() -> bool:
    """Apply the CPU patches once per process (no-op when CUDA is available); True if active."""
    global _applied
    if not needed():
        return False
    if _applied:
        return True

    from megatron.core import utils as mcore_utils
    from megatron.core.optimizer import clip_grads, distrib_optimizer, optimizer
    from megatron.core.pipeline_parallel import schedules
    from megatron.core.tensor_parallel import random as mcore_random
    from megatron.core.transformer import utils as transformer_utils

    # Megatron allocates buffers, rotary frequencies and masks on torch.cuda.current_device().
    torch.cuda.current_device = lambda: torch.device("cpu")
    # Timers and checkpoint code call torch.cuda.synchronize(); CPU kernels are already synchronous.
    torch.cuda.synchronize = lambda device=None: None

    # The optimizer, grad-norm (utils' multi-tensor fallbacks), default-causal-mask and
    # pipeline-schedule (token counter) code create tensors with device='cuda' literals.
    for module in (clip_grads, optimizer, mcore_utils, transformer_utils, schedules):
        module.torch = _TorchWithCudaOnCpu()
    # clip_grad_by_total_norm_fp32 asserts grad.type() == 'torch.cuda.FloatTensor'; keep the fp32 check.
    optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_fp32
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_fp32

    # The RNG tracker saves/restores the "cuda" generator; on CPU that is the CPU generator.
    mcore_random.torch = _TorchWithCudaOnCpu()
    mcore_random._get_cuda_rng_state = lambda device=None, clone=False, graph_safe=False: torch.get_rng_state()
    mcore_random._set_cuda_rng_state = lambda new_state, device=-1, graph_safe=False: torch.set_rng_state(new_state)

    # The distributed optimizer sorts parameters by their type name when it is built ('torch.cuda.FloatTensor'
    # and the 16-bit ones) and refuses any other; on CPU the names lack '.cuda'.
    optimizer_class = distrib_optimizer.DistributedOptimizer
    optimizer_class.__init__ = _with_tensor_method(optimizer_class.__init__, "type", _cuda_type_name)
    # Its model-space checkpoint format gathers each bucket's state through the device ('.cuda()').
    optimizer_class.get_parameter_state_dp_zero = _with_tensor_method(
        optimizer_class.get_parameter_state_dp_zero, "cuda", lambda original: lambda self, *args, **kwargs: self)

    _applied = True
    return True


def _cuda_type_name(original):
    def cuda_type(self, dtype=None, non_blocking=False, **rest):
        if dtype is None and not rest and self.device.type == "cpu":
            return original(self).replace("torch.", "torch.cuda.", 1)
        return original(self, dtype, non_blocking, **rest)

    return cuda_type


def _with_tensor_method(function, name: str, replacement):
    """``function`` with ``torch.Tensor.<name>`` replaced by ``replacement(original)`` while it runs
    (megatron calls these methods on tensors, where no module-level patch reaches; training is
    single-threaded in each rank)."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        original = getattr(torch.Tensor, name)
        setattr(torch.Tensor, name, replacement(original))
        try:
            return function(*args, **kwargs)
        finally:
            setattr(torch.Tensor, name, original)

    return wrapped


def _cpu_device(device):
    if isinstance(device, int) or (isinstance(device, (str, torch.device)) and str(device).startswith("cuda")):
        return torch.device("cpu")
    return device


def _on_cpu(factory):
    def wrapped(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return factory(*args, **kwargs)

    return wrapped


class _CudaOnCpu:
    """``torch.cuda`` as seen by a patched module: RNG and device queries answer for the CPU."""

    get_rng_state = staticmethod(lambda device="cuda": torch.get_rng_state())
    set_rng_state = staticmethod(lambda new_state, device="cuda": torch.set_rng_state(new_state))
    manual_seed = staticmethod(lambda seed: torch.manual_seed(seed))
    empty_cache = staticmethod(lambda: None)

    def __getattr__(self, name):
        return getattr(torch.cuda, name)


class _TorchWithCudaOnCpu:
    """``torch`` as seen by one megatron module: 'cuda' factories and RNG calls go to the CPU."""

    tensor = staticmethod(_on_cpu(torch.tensor))
    zeros = staticmethod(_on_cpu(torch.zeros))
    ones = staticmethod(_on_cpu(torch.ones))
    empty = staticmethod(_on_cpu(torch.empty))
    full = staticmethod(_on_cpu(torch.full))
    cuda = _CudaOnCpu()

    def __getattr__(self, name):
        return getattr(torch, name)


@torch.no_grad()
def _clip_grad_by_total_norm_fp32(parameters, max_norm, total_norm, use_decoupled_grad=False):
    from megatron.core.optimizer.clip_grads import multi_tensor_applier, multi_tensor_scale_impl
    from megatron.core.utils import to_local_if_dtensor

    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = []
    for param in parameters:
        grad = getattr(param, attr, None)
        if grad is not None:
            assert grad.dtype in (torch.float32, torch.bfloat16) if use_decoupled_grad else grad.dtype == torch.float32
            grads.append(to_local_if_dtensor(grad).detach())
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0 and grads:
        multi_tensor_applier(multi_tensor_scale_impl, torch.zeros(1, dtype=torch.int), [grads, grads], clip_coeff)
