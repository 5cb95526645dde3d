"""Pretraining with megatron-core: the same code path on a laptop CPU (gloo) and on GPU nodes (NCCL)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from euroflow.atomic import write_text
from euroflow.config import layout_problem
from euroflow.errors import EuroflowError
from euroflow.evaluate.during_training import EVALUATIONS_DIR, is_due, snapshot_for_evaluation
from euroflow.train import checkpoint, shims
from euroflow.train.model import quiet_megatron_warnings
from euroflow.train.plot import plot_loss_curve, read_log

# A run's outputs (written once training has finished) and its working state (never a rule
# output, so that no failure of the rule, and no rerun, removes it): checkpoints, the live log.
LOG_FILE = "train_log.jsonl"
CURVE_FILE = "loss_curve.png"
CHECKPOINT_DIR = "checkpoints"
PROGRESS_FILE = "progress.jsonl"
STOP_FILE = "STOP"
DATA_CACHE_DIR = "data_cache"


def pretrain(config: dict, blend_path, tokenizer_dir, out_dir, *, stop_after_step: int | None = None,
             stop_requested: Callable[[], bool] | None = None) -> dict:
    """Train (or resume) the run's model on the blend; returns a summary of this invocation.

    World size and rank come from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/
    ``MASTER_PORT`` when a launcher (torchrun, Slurm) set them; otherwise ``training.nproc``
    local processes are spawned (one process runs in place). ``stop_after_step`` ends the
    run after that step (and its checkpoint, if one is due), as a kill would.
    ``stop_requested`` (launched ranks only) is asked after every step; when it is true on any
    rank, all ranks save a checkpoint of that step and return with ``preempted`` set: a job
    told its walltime is near ends resumable. A file ``STOP`` in ``out_dir`` (what a second
    trainer started on the same directory writes) does the same, with ``stopped`` set.

    The live log is ``progress.jsonl``; ``train_log.jsonl`` and ``loss_curve.png`` appear when the
    last step is done.
    """
    config = copy.deepcopy(config)
    _check_config(config)
    args = (config, str(blend_path), str(tokenizer_dir), str(out_dir), stop_after_step)
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return _train(*args, stop_requested=stop_requested)
    nproc = config["training"]["nproc"]
    if nproc == 1:
        with _single_process_env():
            return _train(*args)
    return _spawn(nproc, args)


def _check_config(config: dict) -> None:
    """What depends on this machine; the config's own consistency is checked by euroflow.config."""
    if config["training"]["precision"] == "bf16" and not torch.cuda.is_available():
        raise EuroflowError("training.precision: bf16 needs GPUs (megatron's mixed-precision optimizer is CUDA-only); use fp32 on CPU")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _single_process_env:
    """RANK/WORLD_SIZE/... for one local process, removed again afterwards."""

    def __enter__(self):
        self.keys = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
        self.saved = {k: os.environ.get(k) for k in self.keys}
        os.environ.update(self.keys)

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def single_process_group():
    """A one-rank gloo process group (megatron's dataset and checkpoint code expect one), if none exists."""
    if torch.distributed.is_initialized():
        yield
        return
    with _single_process_env():
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
        try:
            yield
        finally:
            torch.distributed.destroy_process_group()


def _spawn(nproc: int, args: tuple) -> dict:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    port = _free_port()
    threads = max(1, (os.cpu_count() or 1) // nproc) if not torch.cuda.is_available() else None
    try:
        mp.spawn(_spawned_rank, args=(nproc, port, threads, args, results), nprocs=nproc, join=True)
    except mp.ProcessRaisedException as exc:
        last = str(exc).strip().splitlines()[-1]
        prefix = "euroflow.errors.EuroflowError: "
        if last.startswith(prefix):
            raise EuroflowError(last[len(prefix):]) from None
        print(str(exc).strip(), file=sys.stderr, flush=True)  # not an error of the input: the rank's traceback, for a bug report
        raise EuroflowError(f"a training rank failed: {last}") from None
    except mp.ProcessExitedException as exc:
        import signal

        how = f"was killed by {signal.Signals(-exc.exit_code).name}" if exc.exit_code < 0 else f"exited with status {exc.exit_code}"
        raise EuroflowError(
            f"training rank {exc.error_index} {how}; the other ranks were stopped. Rerun to resume from the latest checkpoint in {args[3]}"
        ) from None
    return results.get()


def _arm_parent_death_signal() -> None:
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_FORKS_ARMED = False


def children_die_with_me() -> None:
    """Every process this one forks from now on (megatron's checkpoint writers) is killed by the
    kernel when this one dies (Linux): a killed trainer leaves nothing behind that keeps writing,
    or keeps the rule's log pipe open."""
    global _FORKS_ARMED
    if sys.platform.startswith("linux") and not _FORKS_ARMED:
        os.register_at_fork(after_in_child=_arm_parent_death_signal)
        _FORKS_ARMED = True


def die_with_parent() -> None:
    """This process (a spawned rank) and its children are killed when the parent trainer dies."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    _arm_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    children_die_with_me()


def _spawned_rank(rank: int, world: int, port: int, threads: int | None, args: tuple, results) -> None:
    die_with_parent()
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if threads:
        torch.set_num_threads(threads)
    summary = _train(*args)
    if rank == 0:
        results.put(summary)


def _train(config: dict, blend_path: str, tokenizer_dir: str, out_dir: str, stop_after_step: int | None,
           stop_requested: Callable[[], bool] | None = None) -> dict:
    quiet_megatron_warnings()
    shims.apply()
    from megatron.core import parallel_state

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    training = config["training"]
    tp, pp = training["tensor_model_parallel_size"], training["pipeline_model_parallel_size"]
    problem = layout_problem(training, world, "this training job")
    if problem:
        raise EuroflowError(problem)
    dp = world // (tp * pp)

    owns_group = not torch.distributed.is_initialized()
    if owns_group:
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=rank, world_size=world)
    try:
        parallel_state.initialize_model_parallel(tp, pp)
        return _Trainer(config, Path(blend_path), Path(tokenizer_dir), Path(out_dir), dp).run(stop_after_step, stop_requested)
    finally:
        parallel_state.destroy_model_parallel()
        if owns_group:
            torch.distributed.destroy_process_group()


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    from megatron.core import parallel_state, tensor_parallel

    # As Megatron-LM: one seed per pipeline stage; the TP/DP ranks of a stage share it so that
    # CPU-initialized weights are identical before being split.
    seed = seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed, force_reset_rng=True)


class _Trainer:
    def __init__(self, config: dict, blend_path: Path, tokenizer_dir: Path, out_dir: Path, dp: int):
        from megatron.core import parallel_state

        self.config = config
        self.training = config["training"]
        self.out_dir = out_dir
        self.ckpt_root = out_dir / CHECKPOINT_DIR
        self.log_path = out_dir / PROGRESS_FILE
        self.final_log = out_dir / LOG_FILE
        self.stop_file = out_dir / STOP_FILE
        self.rank = torch.distributed.get_rank()
        self.dp = dp
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.micro_batch_size = self.training["micro_batch_size"]
        self.global_batch_size = self.training["global_batch_size"]
        self.num_micro_batches = self.global_batch_size // (self.micro_batch_size * dp)
        self.seq_length = config["model"]["seq_length"]
        self.train_steps = self.training["train_steps"]
        self.blend_path, self.tokenizer_dir = blend_path, tokenizer_dir
        if self.rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
        torch.distributed.barrier()

    # -- setup -----------------------------------------------------------------------------

    def _build(self, data=None) -> None:
        """Datasets (or ``data``: an object with ``train``, ``valid`` and ``tokenizer.vocab_size``, as
        benchmarks/train_throughput.py gives it), model, optimizer and scheduler."""
        from megatron.core import parallel_state
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

        from euroflow.train.data import build_datasets
        from euroflow.train.model import build_model, params_dtype

        _seed_everything(self.config["run"]["seed"])
        self.data = data or build_datasets(
            self.config,
            self.blend_path,
            self.tokenizer_dir,
            self.out_dir / DATA_CACHE_DIR,
            train_samples=self.train_steps * self.global_batch_size,
            valid_samples=self.global_batch_size,
        )
        gpt = build_model(
            self.config,
            self.data.tokenizer.vocab_size,
            pre_process=parallel_state.is_pipeline_first_stage(),
            post_process=parallel_state.is_pipeline_last_stage(),
        )
        bf16 = params_dtype(self.config) == torch.bfloat16
        t = self.training
        self.model = DistributedDataParallel(
            gpt.config,
            DistributedDataParallelConfig(
                grad_reduce_in_fp32=True,
                use_distributed_optimizer=t["distributed_optimizer"],
                overlap_grad_reduce=t["overlap_grad_reduce"],
                overlap_param_gather=t["overlap_param_gather"],
                bucket_size=t["ddp_bucket_size"],
            ),
            gpt,
        )
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam",
                lr=t["lr"],
                min_lr=t["min_lr"],
                weight_decay=t["weight_decay"],
                adam_beta1=t["adam_beta1"],
                adam_beta2=t["adam_beta2"],
                adam_eps=t["adam_eps"],
                clip_grad=t["clip_grad"],
                bf16=bf16,
                params_dtype=params_dtype(self.config),
                use_distributed_optimizer=t["distributed_optimizer"],
            ),
            [self.model],
        )
        self.scheduler = OptimizerParamScheduler(
            self.optimizer,
            init_lr=0.0,
            max_lr=t["lr"],
            min_lr=t["min_lr"],
            lr_warmup_steps=t["warmup_steps"],
            lr_decay_steps=self.train_steps,
            lr_decay_style=t["lr_decay_style"],
            start_wd=t["weight_decay"],
            end_wd=t["weight_decay"],
            wd_incr_steps=self.train_steps,
            wd_incr_style="constant",
        )
        gpt.config.no_sync_func = self.model.no_sync
        gpt.config.finalize_model_grads_func = finalize_model_grads
        gpt.config.grad_scale_func = self.optimizer.scale_loss

    # -- one step --------------------------------------------------------------------------

    def _forward_step(self, data_iterator, model):
        batch = next(data_iterator)
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
        return output, partial(_masked_loss, batch["loss_mask"])

    def _run_batches(self, dataset, consumed_samples: int, *, forward_only: bool) -> float:
        """Forward (and backward) one global batch; the token-mean loss over all ranks."""
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from euroflow.train.data import micro_batches

        batches = micro_batches(dataset, consumed_samples, self.num_micro_batches, self.micro_batch_size, self.dp_rank, self.dp)
        outputs = get_forward_backward_func()(
            forward_step_func=self._forward_step,
            data_iterator=batches,
            model=[self.model],
            num_microbatches=self.num_micro_batches,
            seq_length=self.seq_length,
            micro_batch_size=self.micro_batch_size,
            forward_only=forward_only,
        )
        # [loss sum, tokens] summed over the world: only last pipeline stages contribute, and
        # tensor-parallel duplicates scale numerator and denominator alike.
        totals = torch.zeros(2, dtype=torch.float64)
        for out in outputs:
            totals += out["lm loss"].to("cpu", torch.float64)
        totals = totals.to(self._device())
        torch.distributed.all_reduce(totals)
        return (totals[0] / totals[1]).item()

    def _device(self):
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def _train_step(self, consumed_samples: int) -> dict:
        self.model.train()
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        loss = self._run_batches(self.data.train, consumed_samples, forward_only=False)
        lr = self.optimizer.param_groups[0]["lr"]
        ok, grad_norm, _ = self.optimizer.step()
        if not ok:
            raise EuroflowError("training: the optimizer step failed (non-finite gradients)")
        self.scheduler.step(increment=1)
        return {"loss": loss, "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else None}

    @torch.no_grad()
    def _valid_loss(self) -> float | None:
        if self.data.valid is None or len(self.data.valid) < self.global_batch_size:
            return None
        self.model.eval()
        loss = self._run_batches(self.data.valid, 0, forward_only=True)
        self.model.train()
        return loss

    # -- the run ---------------------------------------------------------------------------

    def _resume_point(self) -> int | None:
        """Rank 0 picks the newest intact checkpoint (naming each damaged newer one); all ranks get it."""
        choice = [None]
        if self.rank == 0:
            choice[0], skipped = checkpoint.resume_point(self.ckpt_root)
            for line in skipped:
                where = f"resuming from {checkpoint.iteration_dir(self.ckpt_root, choice[0])}" if choice[0] else "starting from step 0"
                print(f"euroflow: warning: {line}; {where}", file=sys.stderr, flush=True)
        torch.distributed.broadcast_object_list(choice, src=0)
        return choice[0]

    def _previous_log(self) -> list[dict]:
        # a directory trained before the live log had its own name keeps it in train_log.jsonl
        return read_log(self.log_path if self.log_path.exists() else self.final_log)

    def _resume(self) -> tuple[int, float]:
        """(completed steps, elapsed seconds) after loading the newest intact checkpoint, if any."""
        resume_from = self._resume_point()
        if resume_from is None:
            if self.rank == 0:
                self._rewrite_log([])
            return 0, 0.0
        common = checkpoint.load_checkpoint(self.ckpt_root, resume_from, self.model, self.optimizer, self.scheduler)
        if common.get("model_config") != self.config["model"]:
            raise EuroflowError(
                f"{checkpoint.iteration_dir(self.ckpt_root, resume_from)}: checkpoint model section "
                f"{common.get('model_config')} differs from the config's model section"
            )
        if common["consumed_samples"] != resume_from * self.global_batch_size:
            raise EuroflowError(
                f"{self.ckpt_root}: training.global_batch_size changed since the checkpoint "
                f"({common['consumed_samples']} samples in {resume_from} steps)"
            )
        kept = [e for e in self._previous_log() if e["step"] <= resume_from]
        if self.rank == 0:
            self._rewrite_log(kept)
        return resume_from, (kept[-1]["elapsed_s"] if kept else 0.0)

    def _rewrite_log(self, entries: list[dict]) -> None:
        write_text(self.log_path, "".join(json.dumps(e) + "\n" for e in entries))

    def _save(self, step: int) -> None:
        # With overlapped gathers the model's parameters lag the optimizer's until the next forward
        # pass; the save must see the updated ones (as Megatron-LM's disable_forward_pre_hook).
        gathering = self.training["overlap_param_gather"]
        if gathering:
            self.model.disable_forward_pre_hook(param_sync=True)
        try:
            checkpoint.save_checkpoint(
                self.ckpt_root,
                step,
                self.model,
                self.optimizer,
                self.scheduler,
                {"consumed_samples": step * self.global_batch_size, "model_config": self.config["model"]},
                keep=self.training["keep_checkpoints"],
                reshardable=self.training["reshardable_checkpoints"],
            )
        finally:
            if gathering:
                self.model.enable_forward_pre_hook()
        every = self.config["evaluation"]["during_training"]["every_n_checkpoints"]
        if self.rank == 0 and is_due(step, self.training["checkpoint_interval"], every):
            snapshot_for_evaluation(checkpoint.iteration_dir(self.ckpt_root, step), self.out_dir / EVALUATIONS_DIR)

    def _mfu_per_token_s(self) -> float | None:
        """MFU per token/s of the whole run: (6N + 12*L*H*S) FLOPs per token (as euroflow plan counts
        them) over the peak of all GPUs; None without a peak (``training.peak_tflops``)."""
        from euroflow.sites.plan import flops_per_token

        peak = self.training.get("peak_tflops")
        if not peak:
            return None
        flops = flops_per_token(self.config["model"], self.data.tokenizer.vocab_size, self.training["tensor_model_parallel_size"])
        return flops / (torch.distributed.get_world_size() * peak * 1e12)

    def _any_rank(self, *flags: bool) -> list[bool]:
        """Each flag: true on at least one rank (ranks see a signal or a file at different steps)."""
        votes = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=self._device())
        torch.distributed.all_reduce(votes, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in votes.tolist()]

    def run(self, stop_after_step: int | None, stop_requested: Callable[[], bool] | None = None) -> dict:
        self._build()
        start_step, elapsed_before = self._resume()
        interval = self.training["checkpoint_interval"]
        tokens_per_step = self.global_batch_size * self.seq_length
        log = open(self.log_path, "a", encoding="utf-8") if self.rank == 0 else None
        last = start_step
        loss = None
        preempted = stopped = False
        run_start = time.perf_counter()
        step_seconds = []
        try:
            with _progress(self.rank == 0, start_step, self.train_steps, self.training["log_interval"], mfu_per_token_s=self._mfu_per_token_s()) as progress:
                for step in range(start_step + 1, self.train_steps + 1):
                    tic = time.perf_counter()
                    entry = self._train_step((step - 1) * self.global_batch_size)
                    seconds = time.perf_counter() - tic
                    step_seconds.append(seconds)
                    loss = entry["loss"]
                    entry = {
                        "step": step,
                        **entry,
                        "tokens_per_s": tokens_per_step / seconds,
                        "elapsed_s": elapsed_before + time.perf_counter() - run_start,
                    }
                    save = step % interval == 0 or step == self.train_steps
                    if save:
                        valid = self._valid_loss()
                        if valid is not None:
                            entry["valid_loss"] = valid
                    if log:
                        log.write(json.dumps(entry) + "\n")
                        log.flush()
                    if save:
                        self._save(step)
                    last = step
                    progress(step, entry)
                    if stop_after_step is not None and step >= stop_after_step:
                        break
                    if step < self.train_steps:
                        preempt, stop = self._any_rank(stop_requested is not None and stop_requested(), self.stop_file.exists())
                        if preempt or stop:
                            if not save:
                                self._save(step)
                            preempted, stopped = preempt, stop and not preempt
                            break
        finally:
            if log:
                log.close()
        finished = last >= self.train_steps
        curve = self.out_dir / CURVE_FILE
        if finished and self.rank == 0:
            write_text(self.final_log, self.log_path.read_text(encoding="utf-8"))
            plot_loss_curve(self.final_log, curve, title=f"{self.config['run']['name']}: training loss")
        torch.distributed.barrier()
        ran = len(step_seconds)
        # the first step of a process includes one-off warm-up; leave it out of the rate when possible
        timed = step_seconds[1:] if ran > 1 else step_seconds
        rate = len(timed) / sum(timed) if timed else None
        return {
            "resumed_from": start_step or None,
            "last_step": last,
            "steps_run": ran,
            "finished": finished,
            "preempted": preempted,
            "stopped": stopped,
            "final_loss": loss,
            "steps_per_s": rate,
            "tokens_per_s": rate * tokens_per_step if rate else None,
            "world_size": torch.distributed.get_world_size(),
            "data_parallel_size": self.dp,
            "checkpoint": str(checkpoint.iteration_dir(self.ckpt_root, last)) if checkpoint.iteration_dir(self.ckpt_root, last).is_dir() else None,
            "train_log": str(self.final_log if finished else self.log_path),
            "loss_curve": str(curve) if finished else None,
        }


def _masked_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Megatron-LM's loss contract: (loss sum, token count, {name: [sum, count]}) per micro batch."""
    losses = output_tensor.view(-1).float()
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask)
    num_tokens = mask.sum().clone().detach().to(torch.int)
    report = torch.cat([loss.clone().detach().view(1), num_tokens.view(1).float()])
    return loss, num_tokens, {"lm loss": report}


class _progress:
    """Progress on rank 0: a rich bar on a terminal; elsewhere (under Snakemake's ``tee``, in a Slurm job's
    output file) one plain line every ``log_interval`` steps and at the last, as Megatron-LM prints them,
    so that ``logs/pretrain.log`` follows the run. A no-op on the other ranks."""

    def __init__(self, enabled: bool, start: int, total: int, log_interval: int = 1, stream=None, mfu_per_token_s: float | None = None):
        self.enabled, self.start, self.total, self.log_interval = enabled, start, total, log_interval
        self.mfu_per_token_s = mfu_per_token_s
        self.stream = stream if stream is not None else sys.stdout

    def __enter__(self):
        if not self.enabled:
            return lambda step, entry: None
        if not self.stream.isatty():
            self.bar = None
            started = time.perf_counter()

            def line(step, entry):
                if step % self.log_interval and step != self.total:
                    return
                seconds = (time.perf_counter() - started) / max(step - self.start, 1)
                parts = [f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] step {step}/{self.total}", f"loss {entry['loss']:.4f}"]
                if "valid_loss" in entry:
                    parts.append(f"valid loss {entry['valid_loss']:.4f}")
                parts.append(f"lr {entry['lr']:.3e}")
                if entry.get("grad_norm") is not None:
                    parts.append(f"grad norm {entry['grad_norm']:.3f}")
                parts.append(f"{entry['tokens_per_s']:,.0f} tokens/s")
                if self.mfu_per_token_s:
                    parts.append(f"MFU {entry['tokens_per_s'] * self.mfu_per_token_s:.1%}")
                parts += [f"{seconds * 1000:,.0f} ms/step",
                          f"peak memory {_peak_memory_gib():.2f} GiB",
                          f"ETA {_clock(seconds * (self.total - step))}"]
                print(" | ".join(parts), file=self.stream, flush=True)

            return line
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]pretrain"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeRemainingColumn(),
        )
        self.bar.__enter__()
        self.task = self.bar.add_task("pretrain", total=self.total, completed=self.start, loss="-", tps="-")

        def update(step, entry):
            self.bar.update(self.task, completed=step, loss=f"{entry['loss']:.4f}", tps=f"{entry['tokens_per_s']:,.0f}")

        return update

    def __exit__(self, *exc):
        if self.enabled and self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def _peak_memory_gib() -> float:
    """This rank's peak: allocated device memory on a GPU, resident memory on CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

