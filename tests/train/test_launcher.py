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
