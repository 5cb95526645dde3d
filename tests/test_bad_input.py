"""Bad input from the command line: one line naming file:line or key, a non-zero exit, no output left."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import zstandard

EUROFLOW = [sys.executable, "-m", "euroflow.cli"]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
GOOD = {"id": "d1", "text": "Ein sauberes Dokument. " * 20, "lang": ["deu_Latn"], "filter": "keep"}


def shard(path: Path, payload: bytes, *, truncate: bool = False) -> Path:
    data = zstandard.ZstdCompressor().compress(payload)
    path.write_bytes(data[: len(data) // 2] if truncate else data)
    return path


def line(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode() + b"\n"


CASES = {
    "malformed_json": (line(GOOD) + b'{"id": "d2", "text": "broken\n', False, r":2: malformed JSON"),
    "invalid_utf8": (line(GOOD) + line(GOOD | {"id": "d2"}) + b'{"id": "d3", "text": "caf\xe9"}\n', False, r":3: invalid UTF-8"),
    "missing_text": (line(GOOD) + line({"id": "d2", "lang": ["deu_Latn"]}), False, r":2: missing field 'text'"),
    "truncated_zstd": (line(GOOD) * 400, True, r": truncated zstd stream"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_shard_fails_cleanly(case, tmp_path):
    payload, truncate, expected = CASES[case]
    bad = shard(tmp_path / "de.jsonl.zst", payload, truncate=truncate)
    out = tmp_path / "out"
    proc = subprocess.run(
        EUROFLOW + ["data", "prepare", "--config", "workflow/configs/tiny.yaml", "--lang", "de", "--input", str(bad),
                    "--out", str(out / "de.jsonl.zst"), "--signatures", str(out / "de.sig.npz"),
                    "--lengths", str(out / "de.lengths.npy"), "--report", str(out / "de.report.json")],
        capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"euroflow: error: {bad}")
    assert expected.replace("\\", "") in lines[0]
    leftovers = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert leftovers == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.__setitem__("languages", ["de", "xx"]), "languages: unknown language code 'xx'"),
        (lambda c: c["training"].__setitem__("steps", 5), "training.steps: unknown key"),
        (
            lambda c: c["sampling"].update(policy="explicit", weights={"de": 1.0, "en": -1.0}),
            "sampling.weights.en: -1.0 is less than the minimum of 0",
        ),
    ],
)
def test_bad_config_stops_the_workflow_before_any_job(mutate, expected, tmp_path, repo_root):
    cfg = yaml.safe_load((repo_root / "workflow" / "configs" / "tiny.yaml").read_text())
    cfg["languages"] = ["de", "en"]
    cfg["paths"] = {"results": str(tmp_path / "results"), "provenance_db": str(tmp_path / "prov.sqlite")}
    mutate(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    check = subprocess.run(EUROFLOW + ["config", "check", str(bad)], capture_output=True, text=True)
    assert check.returncode == 1
    assert check.stderr.strip().startswith(f"euroflow: error: {bad}: {expected}")
    assert len(check.stderr.strip().splitlines()) == 1
    run = subprocess.run(
        [SNAKEMAKE, "--profile", "profiles/local", "--configfile", str(bad), "--cores", "1"],
        cwd=repo_root, capture_output=True, text=True,
    )
    assert run.returncode != 0
    assert expected in run.stderr
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "prov.sqlite").exists()


@pytest.fixture
def small_mounts(tmp_path):
    """A read-only file system and a full one (5 MB), as real tmpfs mounts (needs root, as the Slurm tests do)."""
    mounts = {"readonly": tmp_path / "ro", "full": tmp_path / "full"}
    for name, path in mounts.items():
        path.mkdir()
        options = "ro,size=1m" if name == "readonly" else "size=5m"
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
            for mounted in mounts.values():
                subprocess.run(["umount", str(mounted)], capture_output=True)
            pytest.skip("cannot mount a tmpfs here (not root)")
    yield mounts
    for path in mounts.values():
        subprocess.run(["umount", str(path)], capture_output=True)


def _prepare(shard: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        EUROFLOW + ["data", "prepare", "--config", "workflow/configs/tiny.yaml", "--lang", "de", "--input", str(shard),
                    "--out", str(out / "de.jsonl.zst"), "--signatures", str(out / "de.sig.npz"),
                    "--lengths", str(out / "de.lengths.npy"), "--report", str(out / "de.report.json")],
        capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )


def test_a_read_only_output_directory_is_one_line(tmp_path, small_mounts):
    shard_path = shard(tmp_path / "de.jsonl.zst", line(GOOD) * 20)
    proc = _prepare(shard_path, small_mounts["readonly"] / "out")
    assert proc.returncode == 1
    (error,) = proc.stderr.strip().splitlines()
    assert error.startswith(f"euroflow: error: cannot write {small_mounts['readonly'] / 'out'}") or error.startswith(
        f"euroflow: error: {small_mounts['readonly'] / 'out'}")
    assert "Read-only file system (EROFS); the file system is read-only" in error
    assert list(small_mounts["readonly"].iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_no_temporary_files(tmp_path, small_mounts):
    import os

    def words() -> str:  # ~9 kB of hex words per document, no two alike: ~4.5 kB of zstd each
        return " ".join(os.urandom(4).hex() for _ in range(1000))

    docs = b"".join(line(GOOD | {"id": f"d{i}", "text": f"Ein Dokument {i}. " + words()}) for i in range(1500))
    shard_path = shard(tmp_path / "de.jsonl.zst", docs)
    out = small_mounts["full"] / "out"
    proc = _prepare(shard_path, out)
    assert proc.returncode == 1, proc.stdout
    (error,) = proc.stderr.strip().splitlines()
    assert error.startswith(f"euroflow: error: cannot write {out / 'de.'}"), error
    assert "No space left on device (ENOSPC); the file system is full" in error
    assert not out.exists() or [p.name for p in out.iterdir()] == []


@pytest.mark.parametrize("link", ["loop", "dangling"])
def test_a_broken_link_among_the_shards_is_one_line_not_a_skipped_shard(link, tmp_path, repo_root):
    """A shard that is a symlink loop or a dangling link was silently left out of the listing."""
    shards = tmp_path / "shards"
    for hplt in ("deu_Latn", "eng_Latn"):
        (shards / hplt).mkdir(parents=True)
        shard(shards / hplt / "good.jsonl.zst", line(GOOD))
    bad = shards / "deu_Latn" / "bad.jsonl.zst"
    if link == "loop":
        (shards / "deu_Latn" / "other").symlink_to(bad.name)
        bad.symlink_to("other")
    else:
        bad.symlink_to(tmp_path / "gone.jsonl.zst")
    what = "a symlink loop" if link == "loop" else "a dangling symlink"
    listed = subprocess.run(EUROFLOW + ["data", "manifest", "--shards", str(shards), "--languages", "de", "en",
                                        "--out", str(tmp_path / "manifest.tsv")], capture_output=True, text=True)
    assert listed.returncode == 1 and not (tmp_path / "manifest.tsv").exists()
    assert listed.stderr.strip() == f"euroflow: error: {bad}: {what} among the shards of de (data.source.shards); fix or remove it"
    checked = subprocess.run(EUROFLOW + ["data", "check-shard", "--input", str(bad)], capture_output=True, text=True)
    assert checked.returncode == 1 and checked.stderr.strip() == f"euroflow: error: {bad}: {what}"

    cfg = yaml.safe_load((repo_root / "workflow" / "configs" / "tiny.yaml").read_text())
    cfg["languages"] = ["de", "en"]
    cfg["data"]["source"] = {"kind": "hplt", "shards": str(shards)}
    cfg["paths"] = {"results": str(tmp_path / "results"), "provenance_db": str(tmp_path / "prov.sqlite")}
    config = tmp_path / "hplt.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/local", "--configfile", str(config)],
                         cwd=repo_root, capture_output=True, text=True)
    assert run.returncode != 0 and f"{bad}: {what} among the shards of de" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_data_root_without_the_bundle_stops_the_plan_in_one_line(tmp_path, repo_root, data_root):
    """The evaluation sets are rule inputs: a bundle that lacks one is named before any job, not at evaluation."""
    partial = tmp_path / "bundle"
    (partial / "parallel").mkdir(parents=True)
    (partial / "parallel" / "ntrex128").symlink_to(data_root / "parallel" / "ntrex128")  # training text only
    cfg = yaml.safe_load((repo_root / "workflow" / "configs" / "tiny.yaml").read_text())
    cfg["languages"] = ["de", "en"]
    cfg["evaluation"]["bpb_languages"] = ["de"]
    cfg["paths"] = {"results": str(tmp_path / "results"), "provenance_db": str(tmp_path / "prov.sqlite"),
                    "data_root": str(partial)}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/local", "--configfile", str(config)],
                         cwd=repo_root, capture_output=True, text=True)
    errors = [line for line in run.stderr.splitlines() if line.startswith("euroflow: error:")]
    assert run.returncode != 0 and len(errors) == 1, run.stderr
    first = partial / "parallel" / "flores200_sib200"
    assert errors[0].startswith(f"euroflow: error: paths.data_root {partial}: the shared data bundle lacks {first}/"), errors
    assert "more of the" in errors[0] and "set paths.data_root" in errors[0]
    assert "Traceback" not in run.stderr and "MissingInputException" not in run.stderr
    assert not (tmp_path / "results").exists()
