"""The Slurm training job's rendezvous port and its requeue bound (the requeue itself is tested on
the real cluster in tests/slurm)."""

import pickle
from pathlib import Path

from euroflow.train.launcher import RENDEZVOUS_PORTS, TrainingJob, rendezvous_port


def test_each_allocation_of_a_requeued_job_listens_on_a_new_port():
    ports = [rendezvous_port("304", restart) for restart in range(25)]
    assert len(set(ports)) == len(ports)
    assert ports == [rendezvous_port("304", restart) for restart in range(25)]  # every task agrees


def test_rendezvous_ports_lie_outside_the_kernels_ephemeral_range():
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {rendezvous_port(str(job), restart) for job in range(1, 2000) for restart in range(3)}
    assert all(port in RENDEZVOUS_PORTS and not low <= port <= high for port in ports)
    assert len(ports) > 1000  # spread out, so concurrent jobs on one node rarely meet


def _allocation(job: TrainingJob, restart_count: int, resumed_from, last_step) -> TrainingJob:
    """One allocation as Slurm runs it: the pickle submitit requeued, unpickled, then preempted."""
    job = pickle.loads(pickle.dumps(job))
    job._note_progress(restart_count, {"resumed_from": resumed_from, "last_step": last_step})
    return job


def test_requeues_are_bounded_by_progress_not_by_their_number():
    job = TrainingJob({}, "blend.json", "tokenizer", "out", None, max_stalled=3)
    # a slow machine: 40 allocations of a few steps each never stall
    for restart in range(40):
        job = _allocation(job, restart, restart * 5 or None, restart * 5 + 5)
        assert job.stalled == 0
    # the signal comes before the first step: the third allocation in a row without one stops it
    job = _allocation(job, 40, 200, 200)
    assert job.stalled == 1
    job = _allocation(job, 41, 200, 200)
    assert job.stalled == 2
    job = _allocation(job, 42, 200, 201)  # one step is progress
    assert job.stalled == 0
    # allocations that submitit requeued before the training code ran count as stalled too
    job = _allocation(job, 45, 201, 201)
    assert job.stalled == 3 and job.stalled >= job.max_stalled
    fresh = _allocation(TrainingJob({}, "b", "t", "o", None), 0, None, 0)
    assert fresh.stalled == 1  # the first allocation ended before its first step


# What Slurm and the ranks report, as recorded on clusters (sacct State, the failed task's last lines)
NCCL_TIMEOUT = ("[rank3]:[E1204 03:12:55.101] [PG ID 0 PG GUID 0(default_pg) Rank 3] Watchdog caught collective operation "
                "timeout: WorkNCCL(SeqNum=48211, OpType=ALLREDUCE, NumelIn=25165824, Timeout(ms)=600000) ran for 600021 milliseconds")
ECC = "RuntimeError: CUDA error: uncorrectable ECC error encountered"
RCCL = "torch.distributed.DistBackendError: RCCL communicator was aborted: RCCL timeout after 1800 s"
CRASH = "ValueError: training.lr: something the run itself got wrong"
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_a_failed_node_is_told_from_a_failed_run():
    from euroflow.train.launcher import node_failure

    assert node_failure("NODE_FAIL", "") == ("NODE_FAIL", "Slurm state NODE_FAIL")
    assert node_failure("FAILED", NCCL_TIMEOUT)[0] == "NCCL/RCCL timeout"
    assert node_failure("FAILED", RCCL)[0] == "NCCL/RCCL timeout"
    assert node_failure("FAILED", ECC) == ("hardware error", "'uncorrectable ECC error' in the job's error output")
    assert node_failure("FAILED", "NVRM: Xid (PCI:0000:41:00): 79, GPU has fallen off the bus.")[0] == "hardware error"
    # NCCL_DEBUG=INFO output names the timeout variables; a rank out of memory leaves the others to the watchdog
    info = "lrdn0101:12345:12399 [0] NCCL INFO NCCL_IB_TIMEOUT set by environment to 22."
    for state, error in (("FAILED", CRASH), ("OUT_OF_MEMORY", OOM), ("FAILED", OOM), ("CANCELLED by 1000", ""), ("TIMEOUT", ""),
                         ("FAILED", info + "\n" + CRASH), ("FAILED", OOM + "\n" + NCCL_TIMEOUT)):
        assert node_failure(state, error) is None, (state, error)


def test_the_nodes_slurm_marks_bad_are_excluded():
    from euroflow.train.launcher import nodes_to_exclude, parse_node_states

    # sinfo -h -N -n lrdn[0101-0104] -o '%N|%T' after a NODE_FAIL on Leonardo: one down (not responding), one drained
    states = parse_node_states("lrdn0101|allocated\nlrdn0102|down*\nlrdn0103|drained\nlrdn0104|mixed\nlrdn0105|draining@\n")
    assert states == {"lrdn0101": "allocated", "lrdn0102": "down", "lrdn0103": "drained", "lrdn0104": "mixed", "lrdn0105": "draining"}
    assert nodes_to_exclude(states) == ["lrdn0102", "lrdn0103", "lrdn0105"]
    assert nodes_to_exclude(parse_node_states("nid005001|idle\nnid005002|completing\n")) == []
    assert parse_node_states("") == {}
