"""Save and resume training state with megatron.core.dist_checkpointing, atomically.

Layout (as Megatron-LM): ``<root>/iter_0000100/`` (sharded model + optimizer, scheduler,
RNG states, iteration, consumed samples) and ``<root>/latest_checkpointed_iteration.txt``.
A checkpoint is written to ``iter_XXXXXXX.tmp`` and renamed into place, and only then is the
``latest`` file updated, so a kill at any moment leaves the previous checkpoint usable.

Each checkpoint carries ``euroflow_checkpoint.json``: the size of every file in it, and the
sha256 of the small ones (metadata, the common state). Resuming takes the newest checkpoint that
matches its manifest; a damaged one (garbage ``common.pt``, a missing ``metadata.json``, a
truncated shard) is named in one line and the one before it is used. The newest ``keep``
intact checkpoints are kept; older ones are removed after each save.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import random
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError

LATEST_FILE = "latest_checkpointed_iteration.txt"
MANIFEST_FILE = "euroflow_checkpoint.json"
# files below this size are hashed into the manifest (metadata, common state); shards are checked by size
HASHED_BELOW = 16 * 2**20
_ITERATION = re.compile(r"^iter_(\d{7})$")


def failure_reason(exc: BaseException) -> str:
    """The last line of a (possibly multi-rank, traceback-laden) checkpoint error, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {(lines[-1] if lines else '')[:300]}"


def iteration_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def latest_iteration(root: str | Path) -> int | None:
    """The iteration ``latest_checkpointed_iteration.txt`` names (None without one)."""
    path = Path(root) / LATEST_FILE
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8").strip()
    if not text.isdigit():
        raise EuroflowError(f"{path}: expected an iteration number, got {text[:40]!r}")
    iteration = int(text)
    if not iteration_dir(root, iteration).is_dir():
        raise EuroflowError(f"{path}: names iteration {iteration} but {iteration_dir(root, iteration)} is missing")
    return iteration


def saved_iterations(root: str | Path) -> list[int]:
    """Iterations with a checkpoint directory under ``root`` (renamed into place), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [int(m[1]) for p in root.iterdir() if p.is_dir() and (m := _ITERATION.match(p.name))]
    return sorted(found, reverse=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(path: Path) -> None:
    """Record the size of every file of the checkpoint directory ``path`` (and hash the small ones)."""
    files = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        size = file.stat().st_size
        files[file.relative_to(path).as_posix()] = {"size": size, **({"sha256": _sha256(file)} if size < HASHED_BELOW else {})}
    (path / MANIFEST_FILE).write_text(json.dumps({"format": "euroflow-checkpoint/1", "files": files}, indent=1) + "\n", encoding="utf-8")


def damage(path: str | Path) -> str | None:
    """What is wrong with the checkpoint directory ``path``, in a few words; None when it is intact."""
    path = Path(path)
    if not path.is_dir():
        return "the directory is missing"
    manifest_path = path / MANIFEST_FILE
    if manifest_path.is_file():
        try:
            files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return f"{MANIFEST_FILE} is not readable"
        for name, expected in files.items():
            file = path / name
            if not file.is_file():
                return f"{name} is missing"
            size = file.stat().st_size
            if size != expected["size"]:
                return f"{name} is truncated or changed ({size} of {expected['size']} bytes)"
            if "sha256" in expected and _sha256(file) != expected["sha256"]:
                return f"{name} is damaged (its sha256 differs from the one recorded when it was saved)"
        return None
    # written before checkpoints carried a manifest: check what megatron reads first
    for name in ("metadata.json", "common.pt", ".metadata"):
        if not (path / name).is_file():
            return f"{name} is missing"
    try:
        json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "metadata.json is not valid JSON"
    try:
        torch.load(path / "common.pt", map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same: unreadable
        return f"common.pt is not readable ({type(exc).__name__})"
    return None


def resume_point(root: str | Path) -> tuple[int | None, list[str]]:
    """The newest intact checkpoint under ``root`` (None: none), and one line for each newer one
    that is damaged and skipped."""
    skipped = []
    for iteration in saved_iterations(root):
        problem = damage(iteration_dir(root, iteration))
        if problem is None:
            return iteration, skipped
        skipped.append(f"{iteration_dir(root, iteration)}: damaged checkpoint, {problem}")
    return None, skipped


def prune(root: str | Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` intact checkpoints (damaged ones newer than those stay, as
    evidence, until a save of their iteration replaces them); returns what was removed."""
    intact = [i for i in saved_iterations(root) if damage(iteration_dir(root, i)) is None]
    removed = []
    for iteration in intact[keep:]:
        path = iteration_dir(root, iteration)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _rng_state() -> dict:
    from megatron.core import tensor_parallel

    state = {
        "random": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _world() -> tuple[int, int]:
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _layout() -> list[int]:
    """[TP, PP, DP] of this run: a rank's RNG states belong to its place in this layout."""
    from megatron.core import parallel_state

    return [parallel_state.get_tensor_model_parallel_world_size(), parallel_state.get_pipeline_model_parallel_world_size(),
            parallel_state.get_data_parallel_world_size()]


# training.reshardable_checkpoints -> how megatron's distributed optimizer lays out its state in a checkpoint:
# gathered over the data-parallel ranks into the model's own shapes (a resume may change TP, PP and DP), or
# each rank's flat buffers as they are (no exchange at save; a resume may change only DP). The plain
# optimizer's state always has the model's shapes.
OPTIMIZER_SHARDING = {"all": "fully_reshardable", "data_parallel": "dp_reshardable"}


def _in_buffer_coordinates(gather):
    """megatron-core 0.16's ``get_parameter_state_dp_zero`` concatenates each bucket's state without the
    padding at the bucket's end, and the model-space (fully_reshardable) format then cuts parameters out
    of that with their offsets in the padded buffer: with more than one bucket, the state of every
    parameter after the first bucket end was saved shifted (another parameter's moments and master
    weights; its loader pads the shortfall with zeros, the "issue #504" its code mentions). This puts
    each bucket's state back at the bucket's offset, so the offsets are right."""

    @functools.wraps(gather)
    def padded(self, *args, **kwargs):
        state = gather(self, *args, **kwargs)
        for gbuf_idx, by_dtype in (state or {}).items():
            if not isinstance(gbuf_idx, int):  # "buckets_coalesced"
                continue
            buffer = self.buffers[gbuf_idx]
            for world in by_dtype.values():
                for key in ("param", "exp_avg", "exp_avg_sq"):
                    if key not in world:
                        continue
                    unpadded, world[key] = world[key], torch.zeros(buffer.numel, dtype=world[key].dtype)
                    offset = 0
                    for bucket in buffer.buckets:
                        world[key][bucket.offset:bucket.offset + bucket.numel_unpadded] = unpadded[offset:offset + bucket.numel_unpadded]
                        offset += bucket.numel_unpadded
        return state

    return padded


def _fully_reshardable_with_buffer_offsets(method):
    @functools.wraps(method)
    def fixed(self, *args, **kwargs):
        self.get_parameter_state_dp_zero = _in_buffer_coordinates(type(self).get_parameter_state_dp_zero).__get__(self)
        try:
            return method(self, *args, **kwargs)
        finally:
            del self.get_parameter_state_dp_zero

    fixed.euroflow_fixed = True
    return fixed


def _distributed_parts(optimizer) -> list:
    """The DistributedOptimizers in megatron's optimizer (a ChainedOptimizer holds one per parameter group kind)."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    return [part for part in getattr(optimizer, "chained_optimizers", [optimizer]) if isinstance(part, DistributedOptimizer)]


def _is_distributed(optimizer) -> bool:
    return bool(_distributed_parts(optimizer))


def _sharded_state_dict(model, optimizer, *, is_loading: bool, rng: dict | None, sharding: str) -> dict:
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    if not getattr(DistributedOptimizer.sharded_param_state_fully_reshardable, "euroflow_fixed", False):
        DistributedOptimizer.sharded_param_state_fully_reshardable = _fully_reshardable_with_buffer_offsets(
            DistributedOptimizer.sharded_param_state_fully_reshardable)

    model_sd = model.module.sharded_state_dict()
    optimizer_sd = optimizer.sharded_state_dict(model_sd, is_loading=is_loading, metadata={"distrib_optim_sharding_type": sharding})
    state = {"model": model_sd, "optimizer": optimizer_sd}
    rank, world = _world()
    # One RNG state per rank, restored only when resuming with the same world size.
    state["rng_state"] = ShardedObject("rng_state", rng, (world,), (rank,), replica_id=0)
    return state


_WRITE_RESULTS_MANAGER = None


def _write_results_queue_dies_with_this_process() -> None:
    """megatron collects the writers' results through a queue served by a ``Manager`` process it
    spawns on the first save and never stops; when a rank is killed, that server lives on (holding
    the rule's log pipe open, so the job never ends). Serve the queue from a manager that the
    kernel kills with this process instead (Linux)."""
    global _WRITE_RESULTS_MANAGER
    import sys

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if not sys.platform.startswith("linux") or filesystem_async._results_queue is not None:
        return
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=torch.multiprocessing.get_context("spawn"))
    # Slurm sends the time-limit signal to every process of the step, and a freshly spawned
    # interpreter dies of USR2 by default: the rank's next save then failed (EOFError while the
    # server started, BrokenPipeError once it was gone). The server is started with those signals
    # blocked (the mask survives spawn) and ignores them from its first line on.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, PREEMPTION_SIGNALS)
    try:
        manager.start(initializer=_server_ignores_preemption_and_dies_with_parent)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    _WRITE_RESULTS_MANAGER = manager  # kept: a collected manager shuts its server down
    filesystem_async._results_queue = manager.Queue()


# USR2: euroflow's pre-timeout signal (--signal=USR2@N); USR1: what NCCL and other launchers use
PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def _server_ignores_preemption_and_dies_with_parent() -> None:
    from euroflow.train.loop import _arm_parent_death_signal

    for signum in PREEMPTION_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, PREEMPTION_SIGNALS)
    _arm_parent_death_signal()


def save_checkpoint(root: str | Path, iteration: int, model, optimizer, scheduler, common: dict, keep: int | None = None,
                    reshardable: str = "all") -> Path:
    """Collective: every rank calls it. ``common`` holds plain values identical on all ranks.
    With ``keep``, only the newest ``keep`` intact checkpoints remain afterwards. ``reshardable``:
    ``training.reshardable_checkpoints`` (see :data:`OPTIMIZER_SHARDING`)."""
    from megatron.core import dist_checkpointing

    root = Path(root)
    rank, world = _world()
    _write_results_queue_dies_with_this_process()
    final = iteration_dir(root, iteration)
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    torch.distributed.barrier()

    sharding = OPTIMIZER_SHARDING[reshardable]
    state = _sharded_state_dict(model, optimizer, is_loading=False, rng=_rng_state(), sharding=sharding)
    state.update(common)
    state["optimizer_sharding"] = sharding
    state["distributed_optimizer"] = _is_distributed(optimizer)
    state["iteration"] = iteration
    state["opt_param_scheduler"] = scheduler.state_dict()
    state["world_size"] = world
    state["layout"] = _layout()
    # Slurm signals every process of the job step before the walltime (USR2); the writer and queue
    # processes megatron starts for the save would die of it. Held here, they inherit the mask,
    # and this rank sees the signal once the save is done.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        dist_checkpointing.save(state, str(tmp))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    torch.distributed.barrier()

    if rank == 0:
        write_manifest(tmp)
        if final.exists():  # the same iteration saved before a kill that came ahead of the latest-file update
            shutil.rmtree(final)
        tmp.rename(final)
        with atomic_path(root / LATEST_FILE) as latest:
            latest.write_text(f"{iteration}\n", encoding="utf-8")
        if keep is not None:
            prune(root, keep)
    torch.distributed.barrier()
    return final


@contextlib.contextmanager
def _torch_adam_loadable(optimizer):
    """megatron's distributed optimizer over torch's Adam (no Apex or Transformer Engine) cannot load a
    checkpoint as it is: it reads the step from Adam's per-parameter state when it builds the state dict
    to load into, and torch creates that state only at the first step; then it copies the saved
    tensors into every entry of that state, 'step' included, which the model-space format does not
    save (the step comes back through the parameter groups); and it gives every parameter the same step
    tensor, which torch's Adam then increments once per parameter at each step (a step count of 64
    after 4 steps of 15 parameters, and the wrong bias correction). Here the state is allocated first
    (zeros, step 0; loading overwrites them), the copy leaves 'step' alone (and runs without autograd,
    which the data_parallel format's loader forgets), and each parameter gets its own step afterwards."""
    from megatron.core.optimizer.distrib_optimizer import HAVE_APEX_OR_TE, DistributedOptimizer

    parts = _distributed_parts(optimizer)
    if HAVE_APEX_OR_TE or not parts:
        yield
        return
    for part in parts:
        inner = part.optimizer
        for group in inner.param_groups:
            for param in group["params"]:
                if not inner.state[param]:
                    inner.state[param].update(exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param), step=torch.tensor(0.0))
    copy = DistributedOptimizer._set_main_param_and_optimizer_states

    def copy_all_but_step(self, model_param, tensors):
        group_index, group_order = self.model_param_group_index_map[model_param]
        state = self.optimizer.state[self.optimizer.param_groups[group_index]["params"][group_order]]
        step = state.pop("step", None)
        try:
            with torch.no_grad():  # the data_parallel format's loader copies into parameter views with autograd on
                copy(self, model_param, tensors)
        finally:
            if step is not None:
                state["step"] = step

    DistributedOptimizer._set_main_param_and_optimizer_states = copy_all_but_step
    try:
        yield
    finally:
        DistributedOptimizer._set_main_param_and_optimizer_states = copy
    for part in parts:
        for state in part.optimizer.state.values():
            if "step" in state:
                state["step"] = state["step"].detach().clone()


def load_checkpoint(root: str | Path, iteration: int, model, optimizer, scheduler) -> dict:
    """Restore model, optimizer, scheduler and (same layout) RNG states; returns the common values.
    dist_checkpointing reshards model and optimizer state, so the checkpoint may come from another
    TP / PP / DP layout (a different node count on the next allocation); the RNG states of a rank
    are then not restored, as they belonged to another rank's place."""
    from megatron.core import dist_checkpointing

    path = iteration_dir(root, iteration)
    common = dist_checkpointing.load_common_state_dict(str(path))
    _, world = _world()
    layout = common.get("layout", _layout())  # checkpoints saved before layouts were recorded: as now
    restore_rng = common.get("world_size") == world and layout == _layout()
    sharding = common.get("optimizer_sharding", OPTIMIZER_SHARDING["all"])
    if sharding == OPTIMIZER_SHARDING["data_parallel"] and layout[:2] != _layout()[:2]:
        raise EuroflowError(
            f"{path}: saved with training.reshardable_checkpoints: data_parallel at TP x PP = {layout[0]} x {layout[1]}; "
            f"resume with that TP x PP (any data-parallel size), or from a checkpoint saved with reshardable_checkpoints: all"
        )
    saved_distributed = common.get("distributed_optimizer", False)  # none was, before the key was recorded
    if saved_distributed != _is_distributed(optimizer):
        raise EuroflowError(
            f"{path}: saved with training.distributed_optimizer: {str(saved_distributed).lower()}, whose optimizer state this "
            f"run cannot read; resume with distributed_optimizer: {str(saved_distributed).lower()}"
        )
    with _torch_adam_loadable(optimizer):
        state = _sharded_state_dict(model, optimizer, is_loading=True, rng=_rng_state(), sharding=sharding)
        if not restore_rng:
            del state["rng_state"]
        try:
            loaded = dist_checkpointing.load(state, str(path))
        except (Exception, CheckpointException) as exc:  # shape or key mismatch: the checkpoint is from another model
            raise EuroflowError(f"{path}: cannot load the checkpoint into this model ({failure_reason(exc)})") from None
        model.load_state_dict(loaded["model"])
        optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if restore_rng:
        _set_rng_state(loaded["rng_state"])
    return {k: v for k, v in loaded.items() if k not in ("model", "optimizer", "rng_state", "optimizer_sharding", "layout", "distributed_optimizer")}


def load_model_weights(checkpoint_dir: str | Path, gpt_model) -> int:
    """Load only the model weights of a checkpoint (any TP/PP layout) into ``gpt_model``; returns the iteration."""
    from megatron.core import dist_checkpointing

    checkpoint_dir = Path(checkpoint_dir)
    common = dist_checkpointing.load_common_state_dict(str(checkpoint_dir))
    loaded = dist_checkpointing.load({"model": gpt_model.sharded_state_dict()}, str(checkpoint_dir))
    gpt_model.load_state_dict(loaded["model"])
    return int(common["iteration"])
