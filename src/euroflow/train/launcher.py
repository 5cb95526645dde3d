"""Pretraining on a Slurm site, walltime-proof: the pretrain rule (a local rule, on the login node)
submits the training job through submitit and waits for it.

- One ``srun`` task per GPU; ``submitit.helpers.TorchDistributedEnvironment`` gives each task its
  rank (no torchrun under submitit); the rendezvous port changes with every allocation.
- Before the walltime Slurm sends USR2 (``--signal=USR2@N``; NCCL uses USR1). Every rank notes
  it; at the next step boundary all ranks agree, save a distributed checkpoint of that step, and
  rank 0 hands over to submitit, which requeues the job (same job id, ``SLURM_RESTART_COUNT`` + 1).
  The requeued job resumes from that checkpoint exactly.
- Requeues are bounded by progress: a job whose last ``max_stalled`` allocations in a row ended
  without a new training step (start-up longer than the allocation, say) is not requeued again;
  ``max_requeues`` is only a backstop. A crash or an out-of-memory kill is not requeued at all: the
  launcher reports the job id, Slurm state and last error line.
- A bad node is different: an allocation that ends NODE_FAIL, or whose last error is an NCCL/RCCL
  timeout or a device hardware error (uncorrectable ECC, a GPU fallen off the bus), runs again
  (resuming from the latest checkpoint) without the allocation's nodes that Slurm now marks down,
  drained or failing, at most ``max_node_failures`` times: a NODE_FAIL job Slurm requeued itself (its
  default where requeues are allowed) gets ``ExcNodeList``, any other is submitted again with
  ``--exclude``. Each such end is a line of the allocations file (outcome "node failure", why, the
  nodes excluded), so provenance records it.
- Each Slurm attempt appends one line to the allocations file (``--allocations``), which the
  job's provenance sidecar carries into the database.
- A relaunch while the previous training job is still queued or running (the Snakemake head
  was restarted) attaches to that job instead of submitting a second one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import submitit

from euroflow.errors import EuroflowError

SUBMITIT_DIR = "submitit"
CURRENT_JOB_FILE = "current_job"
# a backstop only: a 48-hour allocation at a time, 200 requeues are more than a year of training
DEFAULT_MAX_REQUEUES = 200
DEFAULT_MAX_STALLED = 3
# Below Linux's default ephemeral range (32768-60999), where outgoing connections (gloo's among
# them) take their local ports: a rendezvous port drawn from there can be taken already.
RENDEZVOUS_PORTS = range(20000, 32768)


class _Preemption:
    """USR2 noted on this rank; submitit's own handler kept to requeue once the checkpoint is saved."""

    def __init__(self) -> None:
        self.signalled = False
        self.submitit_handler = signal.getsignal(signal.SIGUSR2)
        signal.signal(signal.SIGUSR2, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def requested(self) -> bool:
        return self.signalled

    def hand_over(self, rank: int) -> None:
        """Rank 0: submitit checkpoints this callable and requeues the job (it exits, or raises
        UncompletedJobError when the requeues are spent). Other ranks wait to be stopped by the requeue."""
        if rank == 0 and callable(self.submitit_handler):
            self.submitit_handler(signal.SIGUSR2, None)
        time.sleep(300)
        raise EuroflowError("preempted, but the job was not requeued within 300 s")


def _append_json_line(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class TrainingJob(submitit.helpers.Checkpointable):
    """What each Slurm task runs: one training rank. Checkpointable: submitit requeues it."""

    def __init__(self, config: dict, blend: str, tokenizer: str, out_dir: str, allocations: str | None,
                 max_stalled: int = DEFAULT_MAX_STALLED) -> None:
        self.config, self.blend, self.tokenizer, self.out_dir, self.allocations = config, blend, tokenizer, out_dir, allocations
        self.max_stalled = max_stalled
        # carried from one allocation to the next in the pickle submitit requeues
        self.stalled = 0
        self.last_restart_count = -1

    def _note_progress(self, restart_count: int, summary: dict) -> None:
        """Count the allocations in a row without a new step; those that submitit requeued before
        this code ran (the signal came during start-up) count too."""
        self.stalled += max(0, restart_count - self.last_restart_count - 1)
        self.last_restart_count = restart_count
        progressed = summary["last_step"] > (summary["resumed_from"] or 0)
        self.stalled = 0 if progressed else self.stalled + 1

    def __call__(self) -> dict:
        import torch

        from euroflow.train.loop import pretrain

        os.environ["MASTER_PORT"] = str(rendezvous_port(os.environ["SLURM_JOB_ID"], int(os.environ.get("SLURM_RESTART_COUNT", "0"))))
        # LOCAL_RANK picks the GPU, so every task keeps all of the node's GPUs visible
        dist = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and not torch.cuda.is_available():
            torch.set_num_threads(int(cpus))
        preemption = _Preemption()
        started = time.time()
        summary = pretrain(self.config, self.blend, self.tokenizer, self.out_dir, stop_requested=preemption.requested)
        if dist.rank == 0 and self.allocations:
            _append_json_line(Path(self.allocations), {
                "slurm_jobid": os.environ.get("SLURM_JOB_ID"),
                "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
                "partition": os.environ.get("SLURM_JOB_PARTITION"),
                "account": os.environ.get("SLURM_JOB_ACCOUNT"),
                "qos": os.environ.get("SLURM_JOB_QOS"),
                "nodelist": os.environ.get("SLURM_JOB_NODELIST"),
                "num_nodes": int(os.environ.get("SLURM_JOB_NUM_NODES", "1")),
                "world_size": dist.world_size,
                "host": socket.gethostname(),
                "resumed_from": summary["resumed_from"],
                "last_step": summary["last_step"],
                "outcome": "preempted" if summary["preempted"] else ("finished" if summary["finished"] else "stopped"),
                "started_at": started,
                "ended_at": time.time(),
            })
        if summary["preempted"]:
            self._note_progress(int(os.environ.get("SLURM_RESTART_COUNT", "0")), summary)
            if self.stalled >= self.max_stalled:
                raise EuroflowError(
                    f"no new training step in the last {self.stalled} allocations (the time-limit signal came before the "
                    f"first step each time, at step {summary['last_step']}): not requeued again; give each allocation more "
                    f"time (--minutes) or a shorter --signal-delay")
            preemption.hand_over(dist.rank)
        # done: Slurm may still send the pre-timeout signal (up to a minute early); it must not
        # kill the task while submitit writes its result and Python exits
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        return summary


def rendezvous_port(job_id: str, restart_count: int) -> int:
    """The port rank 0 listens on, the same for every task of one allocation.

    A requeued job keeps its id, and its next allocation can start while the previous one's
    socket is still closing: each allocation moves on to the next port."""
    first = zlib.crc32(job_id.encode()) % len(RENDEZVOUS_PORTS)
    return RENDEZVOUS_PORTS[(first + restart_count) % len(RENDEZVOUS_PORTS)]


def _alive(job_id: str) -> bool:
    """Whether Slurm still has ``job_id`` queued or running (requeued jobs included)."""
    proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _queued_again(job_id: str) -> bool:
    """Whether Slurm has ``job_id`` waiting or running again (requeued), not merely completing."""
    proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    states = set(proc.stdout.split()) if proc.returncode == 0 else set()
    return bool(states & {"PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})


def _wait_until_out_of_the_queue(job_id: str, poll_s: float, limit_s: float = 120.0) -> None:
    """The tasks have written their results; Slurm still ends the job (epilog, accounting)."""
    deadline = time.time() + limit_s
    while _alive(job_id) and time.time() < deadline:
        time.sleep(min(poll_s, 2.0))


def _state(job: submitit.SlurmJob) -> str:
    """The job's state in accounting now (submitit caches the first state it took for an end)."""
    proc = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job.job_id], capture_output=True, text=True)
    states = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return states[-1] if proc.returncode == 0 and states else "UNKNOWN"


# Last error lines that mean the fabric or the hardware failed, not the run (NCCL / RCCL and the CUDA /
# HIP runtimes' own wording); anything else is the run's own failure and is not submitted again.
FABRIC_ERRORS = re.compile(  # the phrases themselves, case-sensitive: NCCL INFO lines name NCCL_IB_TIMEOUT and the like
    r"Watchdog caught collective operation timeout|ncclSystemError|ncclRemoteError"
    r"|(?:NCCL|RCCL) communicator was aborted|(?:NCCL|RCCL) timeout"
)
# a rank out of memory leaves the others in a collective until the watchdog fires: the run's failure
OUT_OF_MEMORY = re.compile(r"OutOfMemoryError|CUDA out of memory|HIP out of memory|hipErrorOutOfMemory")
HARDWARE_ERRORS = re.compile(r"uncorrectable ECC error|hipErrorECCNotCorrectable|ECC error|fallen off the bus|GPU is lost|Xid \d+",
                             re.IGNORECASE)
# sinfo's node states (lower case, suffixes such as '*' not-responding stripped) a node should be avoided in
BAD_NODE_STATES = frozenset({"down", "drain", "drained", "draining", "fail", "failing", "maint", "reboot_issued", "reboot_requested"})
DEFAULT_MAX_NODE_FAILURES = 3


def node_failure(state: str, error: str) -> tuple[str, str] | None:
    """(kind, evidence) when an allocation's end looks like a failed node rather than a failed run:
    kind "NODE_FAIL", "NCCL/RCCL timeout" or "hardware error"; None when it does not."""
    if state.split()[0:1] == ["NODE_FAIL"]:
        return "NODE_FAIL", "Slurm state NODE_FAIL"
    if state.split()[0:1] == ["OUT_OF_MEMORY"] or OUT_OF_MEMORY.search(error):
        return None
    for kind, pattern in (("NCCL/RCCL timeout", FABRIC_ERRORS), ("hardware error", HARDWARE_ERRORS)):
        found = pattern.search(error)
        if found:
            return kind, f"{found.group(0)!r} in the job's error output"
    return None


def parse_node_states(sinfo_output: str) -> dict[str, str]:
    """``sinfo -h -N -o '%N|%T'`` lines -> {node: state}, the state lower case without sinfo's suffixes."""
    states = {}
    for line in sinfo_output.splitlines():
        node, _, state = line.strip().partition("|")
        if node and state:
            states[node] = state.strip().lower().rstrip("*~#!%$@^-+")
    return states


def nodes_to_exclude(states: dict[str, str]) -> list[str]:
    return sorted(node for node, state in states.items() if state in BAD_NODE_STATES)


def node_states(nodelist: str | None) -> dict[str, str]:
    """The state Slurm gives now to each node of a Slurm node list (``lrdn[0101-0104]``)."""
    if not nodelist or nodelist == "None assigned":
        return {}
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
    nodes = hosts.stdout.split() if hosts.returncode == 0 else []
    if not nodes:
        return {}
    sinfo = subprocess.run(["sinfo", "-h", "-N", "-n", ",".join(nodes), "-o", "%N|%T"], capture_output=True, text=True)
    return parse_node_states(sinfo.stdout) if sinfo.returncode == 0 else {}


def allocation_node_states(job_id: str) -> dict[str, str]:
    """The state Slurm gives now to each node the job's last allocation ran on."""
    proc = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "NodeList", "-j", job_id], capture_output=True, text=True)
    lists = [line.strip() for line in proc.stdout.splitlines() if line.strip() and line.strip() != "None assigned"]
    return node_states(lists[-1]) if proc.returncode == 0 and lists else {}


def _forget_end(job_id: str) -> None:
    """submitit caches the first end state it sees for good; a job Slurm requeued runs again."""
    watcher = submitit.SlurmJob.watcher
    watcher._finished.discard(job_id)
    watcher._info_dict.pop(job_id, None)


class _NodeFailures:
    """The node failures of one training run, bounded by ``max_failures``. Each is a line of the
    allocations file (outcome "node failure: KIND", the evidence, the nodes excluded), and the nodes Slurm
    marks bad are excluded from every later allocation: through ``--exclude`` on a job submitted again,
    through ``ExcNodeList`` on one Slurm requeued itself (a NODE_FAIL job is requeued by Slurm when the
    site allows requeues, which is the default)."""

    def __init__(self, allocations: str | None, max_failures: int):
        self.allocations = Path(allocations) if allocations else None
        self.max_failures = max_failures
        self.count = 0
        self.excluded: set[str] = set()
        self.noted: set[tuple[str, int]] = set()  # (job id, run) already counted
        if self.allocations and self.allocations.exists():  # a restarted launcher records none twice (its budget is new)
            from euroflow.provenance.sidecar import read_allocations

            self.noted = {(str(entry["slurm_jobid"]), int(entry.get("restart_count") or 0)) for entry in read_allocations(self.allocations)
                          if str(entry.get("outcome", "")).startswith("node failure")}

    def spent(self) -> bool:
        return self.count >= self.max_failures

    def note(self, job_id: str, run: int, state: str, kind: str, evidence: str, states: dict[str, str]) -> list[str]:
        """Record one node failure; returns the nodes to exclude from now on."""
        self.noted.add((job_id, run))
        self.count += 1
        bad = nodes_to_exclude(states)
        self.excluded.update(bad)
        if self.allocations:
            _append_json_line(self.allocations, {
                "slurm_jobid": job_id, "restart_count": run, "outcome": f"node failure: {kind}", "state": state,
                "reason": evidence, "nodelist": ",".join(sorted(states)) or None, "excluded": bad, "ended_at": time.time(),
            })
        return bad

    def watch(self, job_id: str) -> None:
        """Note the runs of ``job_id`` that ended NODE_FAIL and that Slurm requeued (the job is queued
        again under its id), and keep their bad nodes out of the next run."""
        from euroflow.provenance.slurm_accounting import query_sacct

        runs = query_sacct([job_id]).get(job_id, [])
        for run in runs[:-1]:  # the last one is the run queued or running now
            if run["state"] != "NODE_FAIL" or (job_id, run["restart_count"]) in self.noted:
                continue
            if self.spent():
                subprocess.run(["scancel", job_id], capture_output=True)
                raise EuroflowError(f"training job {job_id} ended NODE_FAIL again after {self.count} node failures "
                                    f"(--max-node-failures): cancelled, not run again (logs: the job's submitit folder)")
            states = node_states(run["nodelist"])
            self.note(job_id, run["restart_count"], "NODE_FAIL", "NODE_FAIL", "Slurm state NODE_FAIL", states)
            where = ", ".join(sorted(states)) or "unknown nodes"
            excluded = ""
            if self.excluded:
                update = subprocess.run(["scontrol", "update", f"jobid={job_id}", f"ExcNodeList={','.join(sorted(self.excluded))}"],
                                        capture_output=True, text=True)
                excluded = (f" without {', '.join(sorted(self.excluded))}" if update.returncode == 0 else
                            f" (its nodes could not be excluded, it started already: {update.stderr.strip()[:200]})")
            print(f"euroflow: training job {job_id} ended NODE_FAIL on {where}; Slurm requeued it, it runs again{excluded} "
                  f"(node failure {self.count} of at most {self.max_failures})", file=sys.stderr, flush=True)


def launch(
    config: dict,
    blend: str,
    tokenizer: str,
    out_dir: str,
    *,
    site_name: str,
    resources: dict[str, Any],
    allocations: str | None = None,
    max_requeues: int = DEFAULT_MAX_REQUEUES,
    max_stalled: int = DEFAULT_MAX_STALLED,
    max_node_failures: int = DEFAULT_MAX_NODE_FAILURES,
    signal_delay_s: int | None = None,
    poll_s: float = 10.0,
) -> dict:
    """Submit (or re-attach to) the training job on ``site_name`` and wait for its summary."""
    from euroflow import sites
    from euroflow.sites import submission

    site = sites.load(site_name)
    if site["scheduler"] != "slurm":
        raise EuroflowError(f"site {site_name}: no Slurm scheduler; run pretrain without --site")
    account = submission.account(site)
    extra = {"signal_delay_s": signal_delay_s} if signal_delay_s else {}
    params = submission.training_parameters(site, resources, account_name=account,
                                            job_name=f"euroflow-pretrain-{config['run']['name']}", **extra)
    if config["training"].get("peak_tflops") is None:  # the MFU in the progress lines: the site knows its GPUs
        node = site["nodes"][site["partitions"][params["partition"]]["node"]]
        if node.get("peak_bf16_tflops"):
            config = {**config, "training": {**config["training"], "peak_tflops": node["peak_bf16_tflops"]}}
    out = Path(out_dir).resolve()
    folder = out / SUBMITIT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_requeues, python=submission.python_command(site, account))
    executor.update_parameters(**params)
    current = folder / CURRENT_JOB_FILE
    previous = current.read_text(encoding="utf-8").strip() if current.exists() else ""
    task = TrainingJob(config, str(Path(blend).resolve()), str(Path(tokenizer).resolve()), str(out),
                       str(Path(allocations).resolve()) if allocations else None, max_stalled)

    def submit() -> submitit.SlurmJob:
        job = executor.submit(task)
        current.write_text(job.job_id + "\n", encoding="utf-8")
        print(f"euroflow: submitted training job {job.job_id} ({params['nodes']} nodes x {params['ntasks_per_node']} tasks, "
              f"{params['time']} min per allocation, partition {params['partition']})", file=sys.stderr, flush=True)
        return job

    def attach(job_id: str) -> submitit.SlurmJob:
        return submitit.SlurmJob(folder=folder, job_id=job_id, tasks=tuple(range(params["nodes"] * params["ntasks_per_node"])))

    if previous and _alive(previous):
        job = attach(previous)
        print(f"euroflow: attached to training job {previous}, still in Slurm", file=sys.stderr, flush=True)
    else:
        job = submit()
    failures = _NodeFailures(allocations, max_node_failures)
    while True:
        relay = _OutputRelay(Path(job.paths.stdout))
        while not job.done():
            relay()
            failures.watch(job.job_id)
            time.sleep(poll_s)
        relay()
        try:
            results = job.results()
            break
        except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as exc:
            if _queued_again(job.job_id):  # submitit saw the end of a run that Slurm requeued (NODE_FAIL): it runs again
                failures.watch(job.job_id)
                _forget_end(job.job_id)
                job = attach(job.job_id)
                time.sleep(poll_s)
                continue
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = next((line for line in reversed(lines) if "Error" in line or "because" in line), lines[-1] if lines else "")
            _wait_until_out_of_the_queue(job.job_id, poll_s)  # the state then is the final one, not RUNNING
            state = _state(job)
            failure = node_failure(state, str(exc))
            if failure is None or failures.spent():
                spent = f" ({failures.count} node failures already, --max-node-failures)" if failure else ""
                raise EuroflowError(
                    f"training job {job.job_id} ended {state} and is not requeued{spent}: {reason[:400]} (logs: {folder / job.job_id})"
                ) from None
            kind, evidence = failure
            from euroflow.provenance.slurm_accounting import query_sacct

            runs = query_sacct([job.job_id]).get(job.job_id, [])
            states = node_states(runs[-1]["nodelist"]) if runs else allocation_node_states(job.job_id)
            if kind == "NCCL/RCCL timeout" and not nodes_to_exclude(states):  # a timeout on healthy nodes: a hang of the run's own
                raise EuroflowError(
                    f"training job {job.job_id} ended {state} and is not requeued: {evidence}, but Slurm marks none of its nodes "
                    f"({', '.join(sorted(states)) or 'unknown'}) down or drained: {reason[:300]} (logs: {folder / job.job_id})"
                ) from None
            failures.note(job.job_id, len(runs) - 1 if runs else 0, state, kind, evidence, states)
            excluded = failures.excluded
            print(f"euroflow: training job {job.job_id} ended {state} ({evidence}) on {', '.join(sorted(states)) or 'unknown nodes'}; "
                  f"submitting it again{' without ' + ', '.join(sorted(excluded)) if excluded else ''} "
                  f"(node failure {failures.count} of at most {max_node_failures})", file=sys.stderr, flush=True)
            if excluded:
                executor.update_parameters(exclude=",".join(sorted(excluded)))
            job = submit()
    summary = results[0]
    summary["slurm_job_id"] = job.job_id
    if allocations:
        _complete_allocations(Path(allocations), job.job_id)
    return summary


class _OutputRelay:
    """Copies the new complete lines of the training job's first task's output to this process's stderr
    on each call, so that the rule's log (``logs/pretrain.log``) follows the run as on a workstation
    (stderr, beside the launcher's own messages: stdout carries only the summary JSON). A requeued
    allocation that starts the file afresh is followed from its start."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def __call__(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size < self.offset:
            self.offset = 0
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        complete = data.rfind(b"\n") + 1
        if complete:
            self.offset += complete
            sys.stderr.write(data[:complete].decode("utf-8", errors="replace"))
            sys.stderr.flush()


def _complete_allocations(path: Path, job_id: str) -> None:
    """Add the runs of ``job_id`` that accounting knows but that never reached the training code
    (the pre-timeout signal can come within a minute of the start, before a rank starts)."""
    from euroflow.provenance.sidecar import read_allocations
    from euroflow.provenance.slurm_accounting import query_sacct

    known = {(a["slurm_jobid"], int(a.get("restart_count") or 0)) for a in read_allocations(path)}
    for run in query_sacct([job_id]).get(job_id, []):
        if (job_id, run["restart_count"]) not in known:
            outcome = "node failure: NODE_FAIL" if run["state"] == "NODE_FAIL" else "requeued before training started"
            _append_json_line(path, {**run, "outcome": outcome})


def run_euroflow(argv: list[str]) -> None:
    """A ``euroflow`` command as the body of a submitit job; a non-zero exit fails the job."""
    from euroflow.cli import main

    code = main(argv)
    if code:
        raise RuntimeError(f"euroflow {' '.join(argv[:2])} exited with status {code}")


class SlurmEvaluation:
    """The evaluation of a checkpoint as its own Slurm job (euroflow.evaluate.during_training)."""

    def __init__(self, executor: submitit.SlurmExecutor, argv: list[str], log_path: Path):
        self.job = executor.submit(run_euroflow, argv)
        self.log_path = Path(self.job.paths.stdout)
        self.where = f"as Slurm job {self.job.job_id}"
        self._error = ""

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            self.job.result()
            return 0
        except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as exc:
            self._error = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            return 1

    def wait(self) -> None:
        while self.poll() is None:
            time.sleep(2.0)

    def terminate(self) -> None:
        self.job.cancel(check=False)

    def failure(self) -> str:
        from euroflow.evaluate.during_training import last_line

        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        ours = [line for line in lines if line.startswith("euroflow: error:")]
        return f"Slurm job {self.job.job_id} failed: {(ours[-1] if ours else last_line(self.log_path) or self._error)[:300]}"


def evaluation_starter(site_name: str, resources: dict[str, Any], out_dir: str, run_name: str):
    """Starts each checkpoint evaluation as a one-task Slurm job with one GPU (if the nodes have any) on
    the training partition; ``starter(argv, log_path)`` for CheckpointEvaluations."""
    from euroflow import sites
    from euroflow.sites import submission

    site = sites.load(site_name)
    account = submission.account(site)
    params = submission.training_parameters(site, {**resources, "nodes": 1, "runtime": min(60, int(resources.get("runtime") or 60))},
                                            account_name=account, job_name=f"euroflow-eval-{run_name}")
    for key in ("exclusive", "signal_delay_s", "srun_args"):
        params.pop(key, None)
    params["ntasks_per_node"] = 1
    if "gpus_per_node" in params:
        params["gpus_per_node"] = 1
    executor = submitit.SlurmExecutor(folder=Path(out_dir).resolve() / "submitit-evaluations", python=submission.python_command(site, account))
    executor.update_parameters(**params)
    return lambda argv, log_path: SlurmEvaluation(executor, argv, log_path)
