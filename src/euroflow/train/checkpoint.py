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


def _sharded_state_dict(model, optimizer, *, is_loading: bool, rng: dict | None) -> dict:
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    model_sd = model.module.sharded_state_dict()
    state = {"model": model_sd, "optimizer": optimizer.sharded_state_dict(model_sd, is_loading=is_loading)}
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


def save_checkpoint(root: str | Path, iteration: int, model, optimizer, scheduler, common: dict, keep: int | None = None) -> Path:
    """Collective: every rank calls it. ``common`` holds plain values identical on all ranks.
    With ``keep``, only the newest ``keep`` intact checkpoints remain afterwards."""
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

    state = _sharded_state_dict(model, optimizer, is_loading=False, rng=_rng_state())
    state.update(common)
    state["iteration"] = iteration
    state["opt_param_scheduler"] = scheduler.state_dict()
    state["world_size"] = world
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


def load_checkpoint(root: str | Path, iteration: int, model, optimizer, scheduler) -> dict:
    """Restore model, optimizer, scheduler and (same world size) RNG states; returns the common values."""
    from megatron.core import dist_checkpointing

    path = iteration_dir(root, iteration)
    common = dist_checkpointing.load_common_state_dict(str(path))
    _, world = _world()
    restore_rng = common.get("world_size") == world
    state = _sharded_state_dict(model, optimizer, is_loading=True, rng=_rng_state())
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
    return {k: v for k, v in loaded.items() if k not in ("model", "optimizer", "rng_state")}


def load_model_weights(checkpoint_dir: str | Path, gpt_model) -> int:
    """Load only the model weights of a checkpoint (any TP/PP layout) into ``gpt_model``; returns the iteration."""
    from megatron.core import dist_checkpointing

    checkpoint_dir = Path(checkpoint_dir)
    common = dist_checkpointing.load_common_state_dict(str(checkpoint_dir))
    loaded = dist_checkpointing.load({"model": gpt_model.sharded_state_dict()}, str(checkpoint_dir))
    gpt_model.load_state_dict(loaded["model"])
    return int(common["iteration"])
