"""What a run was made of: the source commit and the versions of the key packages."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

# distribution names as pip knows them; "python" is the interpreter itself
KEY_PACKAGES = (
    "python",
    "torch",
    "megatron-core",
    "snakemake",
    "transformers",
    "sentencepiece",
    "gguf",
    "numpy",
)

GIT_TIMEOUT_S = 60


def _git(directory: str | os.PathLike, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", os.fspath(directory), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(directory: str | os.PathLike) -> tuple[str | None, bool | None]:
    """(HEAD commit, dirty) of the work tree containing ``directory``.

    Dirty means modified tracked files or untracked files git does not ignore. Outside a
    git work tree both are None; in a repository without commits the commit is None.
    """
    if _git(directory, "rev-parse", "--is-inside-work-tree") is None:
        return None, None
    head = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD")
    status = _git(directory, "status", "--porcelain")
    commit = head.strip() if head else None
    dirty = None if status is None else bool(status.strip())
    return commit, dirty


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None if not installed), read from metadata
    without importing anything."""
    versions: dict[str, str | None] = {}
    for name in names:
        if name == "python":
            versions[name] = platform.python_version()
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# variables worth keeping for an audit: scheduler, communication libraries, caches, offline modes
RECORDED_PREFIXES = (
    "SLURM_", "NCCL_", "RCCL_", "MIOPEN_", "HIP_", "ROCR_", "CUDA_", "OMP_", "MKL_", "TORCH_", "PYTORCH_",
    "HF_", "TRANSFORMERS_", "WANDB_", "SINGULARITY", "APPTAINER", "EUROFLOW_", "SNAKEMAKE_",
)
RECORDED_NAMES = ("LOADEDMODULES", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV")
SECRET_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD", "_KEY", "_API_KEY", "_CREDENTIALS")
REDACTED = "<redacted>"


def is_secret(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_NAMES or upper.endswith(SECRET_SUFFIXES)


def redact_variables(variables: dict[str, str]) -> dict[str, str]:
    return {name: REDACTED if is_secret(name) else value for name, value in variables.items()}


def redact_command(command: str | None) -> str | None:
    """Blank the values of ``NAME=value`` words whose name looks like a secret (e.g. --config hf_token=...)."""
    if not command:
        return command
    words = []
    for word in command.split(" "):
        name, sep, _ = word.partition("=")
        words.append(f"{name}={REDACTED}" if sep and is_secret(name.lstrip("-").replace("-", "_")) else word)
    return " ".join(words)


def _torch_build() -> dict[str, str | None]:
    """torch's version and the CUDA/ROCm it was built for, read from torch/version.py without importing torch."""
    from importlib.util import find_spec

    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {"torch": None, "cuda": None, "rocm": None}
    namespace: dict[str, object] = {}
    try:
        source = open(os.path.join(spec.submodule_search_locations[0], "version.py"), encoding="utf-8").read()
        exec(compile(source, "torch/version.py", "exec"), namespace)  # a file of plain assignments
    except (OSError, SyntaxError, ImportError):
        return {"torch": None, "cuda": None, "rocm": None}
    return {
        "torch": str(namespace.get("__version__")) if namespace.get("__version__") else None,
        "cuda": str(namespace["cuda"]) if namespace.get("cuda") else None,
        "rocm": str(namespace["hip"]) if namespace.get("hip") else None,
    }


def _gpus() -> list[str]:
    """GPU models as the vendor tools name them; empty on a machine without GPUs."""
    queries = (
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        ["rocm-smi", "--showproductname", "--csv"],
    )
    for command in queries:
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
            return lines[1:] if command[0] == "rocm-smi" else lines
    return []


def snapshot(environ: dict[str, str] | None = None) -> dict:
    """The software environment of this process: all installed distributions, the torch build,
    container, loaded modules, GPUs and the audit-relevant variables, secrets redacted."""
    environ = dict(os.environ if environ is None else environ)
    variables = {
        name: value
        for name, value in sorted(environ.items())
        if name.startswith(RECORDED_PREFIXES) or name in RECORDED_NAMES or is_secret(name)
    }
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name] = dist.version
    return {
        "python": platform.python_version(),
        **_torch_build(),
        "container_image": environ.get("APPTAINER_CONTAINER") or environ.get("SINGULARITY_CONTAINER"),
        "loaded_modules": [m for m in environ.get("LOADEDMODULES", "").split(":") if m],
        "gpus": _gpus(),
        "packages": dict(sorted(packages.items(), key=lambda item: item[0].lower())),
        "variables": redact_variables(variables),
    }
