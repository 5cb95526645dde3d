"""Tests here run on the local Slurm cluster (see the `slurm` package docstring, tests/slurm/__init__.py)."""

from slurm import report_skips, slurm_cluster, slurm_marker_guard  # noqa: F401  (pytest fixtures)


def pytest_terminal_summary(terminalreporter):
    report_skips(terminalreporter)
