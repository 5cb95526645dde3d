"""The Slurm training job's rendezvous port (the requeue itself is tested on the real cluster in tests/slurm)."""

from pathlib import Path

from euroflow.train.launcher import RENDEZVOUS_PORTS, rendezvous_port


def test_each_allocation_of_a_requeued_job_listens_on_a_new_port():
    ports = [rendezvous_port("304", restart) for restart in range(25)]
    assert len(set(ports)) == len(ports)
    assert ports == [rendezvous_port("304", restart) for restart in range(25)]  # every task agrees


def test_rendezvous_ports_lie_outside_the_kernels_ephemeral_range():
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {rendezvous_port(str(job), restart) for job in range(1, 2000) for restart in range(3)}
    assert all(port in RENDEZVOUS_PORTS and not low <= port <= high for port in ports)
    assert len(ports) > 1000  # spread out, so concurrent jobs on one node rarely meet
