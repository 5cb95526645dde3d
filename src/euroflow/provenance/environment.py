"""What a run was made of: the source commit and the versions of the key packages."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import subprocess
from importlib import metadata
from urllib.parse import urlsplit

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


def git_remote_url(directory: str | os.PathLike) -> str | None:
    """The web address of the ``origin`` remote of the work tree containing ``directory``
    (``git@github.com:org/repo.git`` and ``https://user:token@host/org/repo.git`` both give
    ``https://host/org/repo``); None without one, or when it is a local path."""
    remote = _git(directory, "remote", "get-url", "origin")
    if not remote:
        return None
    remote = remote.strip()
    scp = re.fullmatch(r"(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)", remote)
    if scp:
        remote = f"https://{scp[1]}/{scp[2]}"
    parsed = urlsplit(remote)
    if parsed.scheme not in ("http", "https", "ssh", "git") or not parsed.hostname:
        return None
    path = parsed.path.removesuffix(".git").rstrip("/")
    port = f":{parsed.port}" if parsed.port and parsed.scheme in ("http", "https") else ""
    return f"https://{parsed.hostname}{port}{path}"  # credentials never leave the machine


def git_diff_sha256(directory: str | os.PathLike) -> str | None:
    """sha256 of the uncommitted code: ``git diff HEAD --binary`` plus each untracked, not
    ignored file (name and content). None for a clean tree or outside git: two runs with the
    same commit and the same hash ran the same code."""
    diff = _git(directory, "diff", "HEAD", "--binary")
    untracked = _git(directory, "ls-files", "--others", "--exclude-standard", "-z")
    if diff is None or untracked is None or (not diff and not untracked):
        return None
    top = (_git(directory, "rev-parse", "--show-toplevel") or str(directory)).strip()
    digest = hashlib.sha256(diff.encode("utf-8", "surrogateescape"))
    for name in sorted(n for n in untracked.split("\0") if n):
        digest.update(b"\0untracked\0" + name.encode("utf-8", "surrogateescape") + b"\0")
        try:
            with open(os.path.join(top, name), "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()


def snakemake_profile(command: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The --profile (or --workflow-profile) a Snakemake command line used, else $SNAKEMAKE_PROFILE."""
    environ = os.environ if environ is None else environ
    try:
        words = shlex.split(command or "")
    except ValueError:
        words = (command or "").split()
    for flag in ("--profile", "--workflow-profile"):
        for i, word in enumerate(words):
            if word == flag and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
    return environ.get("SNAKEMAKE_PROFILE") or None


def site_name(profile: str | None, sites_dir: str | os.PathLike, environ: dict[str, str] | None = None) -> str | None:
    """The EuroHPC site a run ran on: $EUROFLOW_SITE, else the profile's name when
    ``sites/<name>.yaml`` exists (profiles/lumi runs on sites/lumi.yaml)."""
    environ = os.environ if environ is None else environ
    if environ.get("EUROFLOW_SITE"):
        return environ["EUROFLOW_SITE"]
    if profile:
        name = os.path.basename(os.path.normpath(profile))
        if os.path.isfile(os.path.join(sites_dir, f"{name}.yaml")):
            return name
    return None


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


def container_digest(image: str | None, environ: dict[str, str]) -> str | None:
    """``sha256:<hex>`` of the container image: $EUROFLOW_CONTAINER_DIGEST when the site knows it
    (a registry digest), else the SIF file's own sha256 (read once per run, by the head)."""
    if environ.get("EUROFLOW_CONTAINER_DIGEST"):
        return environ["EUROFLOW_CONTAINER_DIGEST"]
    if image and os.path.isfile(image):
        from euroflow.provenance.hashing import sha256_file

        return "sha256:" + sha256_file(image)
    return None


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
    container = environ.get("APPTAINER_CONTAINER") or environ.get("SINGULARITY_CONTAINER")
    return {
        "python": platform.python_version(),
        **_torch_build(),
        "container_image": container,
        "container_digest": container_digest(container, environ),
        "loaded_modules": [m for m in environ.get("LOADEDMODULES", "").split(":") if m],
        "gpus": _gpus(),
        "packages": dict(sorted(packages.items(), key=lambda item: item[0].lower())),
        "variables": redact_variables(variables),
    }
