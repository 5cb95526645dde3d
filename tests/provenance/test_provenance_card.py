"""The training card (euroflow prov card) of runs recorded with the real recorder API.

The fixture lays out a small run like a real one (results/<run>/data/stats/<lang>.json,
data/blend/blend.json, eval/report.json, ... in the formats the pipeline writes, with tiny values),
records its jobs with start_job/finish_job on observations of those files, and inserts Slurm
accounting rows where a test needs them (test data for the database, as the ingest would write).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest

from euroflow.errors import EuroflowError
from euroflow.provenance.card import (
    NO_ENERGY,
    NO_SLURM,
    NOT_RECORDED,
    card_markdown,
    parameter_count,
    training_card,
    write_card,
)
from euroflow.provenance.db import open_db, session_factory
from euroflow.provenance.hashing import observe
from euroflow.provenance.models import Run, SlurmJob
from euroflow.provenance.recorder import end_run, finish_job, set_run_config, start_job, start_run

RUN_ID = "3f2a9c1e-0000-4000-8000-000000000001"
T0 = dt.datetime(2025, 3, 1, 8, 0, 0)
LANGS = ("de", "fr")

MODEL = {
    "num_layers": 2,
    "hidden_size": 64,
    "ffn_hidden_size": 160,
    "num_attention_heads": 4,
    "num_query_groups": 2,
    "seq_length": 32,
    "rotary_base": 10000,
    "norm_epsilon": 1e-05,
    "init_method_std": 0.02,
    "tie_embeddings": False,
}
CONFIG = {
    "run": {"name": "demo", "description": "test run: 2 languages, 2-layer Llama", "seed": 7},
    "paths": {"results": "results", "provenance_db": "results/provenance.sqlite", "data_root": "../data"},
    "languages": list(LANGS),
    "data": {
        "source": {"kind": "ntrex-demo"},
        "min_chars": 200,
        "max_chars": 1000000,
        "keep_filter_values": ["keep"],
        "dedup": "exact",
        "valid_fraction": 0.02,
    },
    "sampling": {"policy": "temperature", "alpha": 0.3, "unimax_max_epochs": 4},
    "tokenizer": {"type": "sentencepiece-bpe", "vocab_size": 1000, "sample_chars": 4000, "character_coverage": 0.9995},
    "model": MODEL,
    "training": {
        "train_steps": 10,
        "global_batch_size": 4,
        "micro_batch_size": 2,
        "lr": 0.003,
        "min_lr": 0.0003,
        "warmup_steps": 2,
        "lr_decay_style": "cosine",
        "weight_decay": 0.1,
        "tensor_model_parallel_size": 1,
        "pipeline_model_parallel_size": 1,
        "precision": "fp32",
        "nproc": 1,
    },
    "evaluation": {"bpb_languages": list(LANGS), "multiple_choice": ["xcopa"], "batch_size": 4},
    "quantization": {"gguf": ["Q8_0"], "torch_int8": False},
}
TOKENS_SEEN = 10 * 4 * 32  # steps x global batch x sequence length

# per language: (docs in, docs out, bytes in, bytes out, chars out, removed too_short, removed duplicate)
STATS = {"de": (12, 10, 5000, 4000, 3900, 1, 1), "fr": (8, 8, 3000, 3000, 2950, 0, 0)}
TOKENS = {"de": 1500, "fr": 1200}  # uint16 tokens in <lang>.bin (vocabulary 1000 < 65500)
WEIGHTS = {"de": 0.55, "fr": 0.45}
BPB = {"de": 3.25, "fr": 3.5}
PRETRAIN_MINUTES = 120  # every other job of the fixture takes 1 minute


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _json(path: Path, value) -> Path:
    return _write(path, json.dumps(value, indent=2))


def _stats(lang: str, root: str) -> dict:
    docs_in, docs_out, bytes_in, bytes_out, chars_out, short, dup = STATS[lang]
    return {
        "lang": lang,
        "inputs": [f"{root}/data/raw/{lang}.jsonl.zst"],
        "output": f"{root}/data/clean/{lang}.jsonl.zst",
        "params": {"min_chars": 200, "max_chars": 1000000, "keep_filter_values": ["keep"], "dedup": "exact", "normalization": "NFC"},
        "docs_in": docs_in,
        "bytes_in": bytes_in,
        "chars_in": bytes_in - 10,
        "docs_out": docs_out,
        "bytes_out": bytes_out,
        "chars_out": chars_out,
        "nfc_changed_docs": 0,
        "docs_without_filter_field": 0,
        "removed": {"hplt_filter": 0, "too_short": short, "too_long": 0, "duplicate": dup},
        "removed_by_hplt_filter_value": {},
    }


def _blend(root: str) -> dict:
    total = sum(STATS[lang][4] for lang in LANGS)
    languages = [
        {
            "lang": lang,
            "prefix": f"{root}/data/tokenized/{lang}/ntrex.train",
            "weight": WEIGHTS[lang],
            "chars": STATS[lang][4],
            "docs": STATS[lang][1],
            "natural_share": STATS[lang][4] / total,
            "expected_epochs": WEIGHTS[lang] * total / STATS[lang][4],
        }
        for lang in LANGS
    ]
    blend = [x for entry in languages for x in (entry["weight"], entry["prefix"])]
    return {
        "policy": "temperature",
        "params": {"alpha": 0.3, "size_unit": "chars", "budget_chars": total, "corpus_chars": total},
        "languages": languages,
        "megatron_blend": blend,
    }


def _eval_report(root: str) -> dict:
    return {
        "bpb": {
            "model": f"{root}/hf",
            "split": "test",
            "baseline_bpb": 8.0,
            "macro_mean_bpb": sum(BPB.values()) / len(BPB),
            "micro_bpb": 3.4,
            "languages": {
                lang: {"bpb": bpb, "vs_baseline": bpb / 8.0, "sentences": 20, "bytes": 2000, "derived_from": None}
                for lang, bpb in BPB.items()
            },
        },
        "mc": {
            "model": f"{root}/hf",
            "max_items": 10,
            "tasks": {
                "xcopa": {"it": {"n": 10, "acc": 0.6, "acc_norm": 0.5, "acc_norm_bytes": 0.5, "chance": 0.5, "truncated_requests": 0}}
            },
        },
    }


class Recorded:
    def __init__(self, work: Path, engine, run_id: str, jobs: dict[str, int], minutes: list[int]):
        self.work, self.engine, self.run_id, self.jobs, self.minutes = work, engine, run_id, jobs, minutes

    def path(self, relative: str) -> Path:
        return self.work / "results" / "demo" / relative


def record_demo_run(work: Path, *, run_id: str = RUN_ID, config: dict | None = CONFIG) -> Recorded:
    """Write a small run's files under ``work`` and record the jobs that made them."""
    root = "results/demo"
    base = work / root
    for lang in LANGS:
        _write(base / "data" / "raw" / f"{lang}.jsonl.zst", f"raw shard {lang}\n".encode() * 20)
        _write(base / "data" / "clean" / f"{lang}.jsonl.zst", f"clean shard {lang}\n".encode() * 15)
        _json(base / "data" / "stats" / f"{lang}.json", _stats(lang, root))
        _write(base / "data" / "tokenized" / lang / "ntrex.train.bin", b"\x05\x00" * TOKENS[lang])
        _write(base / "data" / "tokenized" / lang / "ntrex.train.idx", b"MMIDIDX\x00\x00" + bytes(40))
    _json(base / "data" / "blend" / "blend.json", _blend(root))
    _json(base / "tokenizer" / "tokenizer_meta.json", {"type": "sentencepiece-bpe", "vocab_size": 1000, "bos_id": 1, "eos_id": 2})
    _write(base / "tokenizer" / "tokenizer.model", b"sentencepiece model bytes")
    _json(base / "reports" / "tokenizer_parity.json", {
        "tokenizer": f"{root}/tokenizer", "vocab_size": 1000, "data": "FLORES-200 via SIB-200", "splits": ["train", "dev"],
        "reference": "de", "words": "whitespace-separated", "notes": [],
        "languages": {
            "de": {"sentences": 10, "tokens": 100, "tokens_per_word": 2.0, "chars_per_token": 3.0, "byte_fallback_share": 0.0, "parity": 1.0},
            "fr": {"sentences": 10, "tokens": 120, "tokens_per_word": 2.2, "chars_per_token": 2.8, "byte_fallback_share": 0.01, "parity": 1.2},
        },
    })
    _write(base / "train" / "checkpoints" / "latest_checkpointed_iteration.txt", "10\n")
    _write(base / "train" / "checkpoints" / "iter_0000010" / "model.pt", b"weights" * 100)
    _write(base / "train" / "train_log.jsonl", "".join(
        json.dumps({"step": s, "loss": 9.0 - s * 0.1, "lr": 0.001} | ({"valid_loss": 8.05} if s == 10 else {})) + "\n"
        for s in range(1, 11)
    ))
    _json(base / "hf" / "config.json", {"architectures": ["LlamaForCausalLM"], "vocab_size": 1000})
    _write(base / "hf" / "model.safetensors", b"tensors" * 50)
    _json(base / "eval" / "report.json", _eval_report(root))
    _write(base / "quantized" / "demo-Q8_0.gguf", b"GGUF" + bytes(300))

    engine = open_db(work / "results" / "provenance.sqlite")
    jobs: dict[str, int] = {}
    minutes: list[int] = []
    clock = [0]

    def job(name: str, rule: str, inputs: list[str], outputs: list[str], duration: int = 1, wildcards=None, threads=1) -> None:
        started = T0 + dt.timedelta(minutes=clock[0])
        clock[0] += duration
        j = start_job(
            session, run_id, len(jobs) + 1, rule=rule, started_at=started, wildcards=wildcards, threads=threads,
            inputs=[("input", observe(base / p)) for p in inputs],
        )
        finish_job(session, j.id, T0 + dt.timedelta(minutes=clock[0]), [("output", observe(base / p)) for p in outputs])
        jobs[name] = j.id
        minutes.append(duration)

    with session_factory(engine)() as session:
        start_run(session, run_id, T0, workdir=str(work), snakefile=str(work / "Snakefile"), host="node1",
                  snakemake_version="9.27.1", git_commit="a" * 40, git_dirty=True,
                  packages={"torch": "2.13.0", "megatron-core": "0.16.1"})
        session.get(Run, run_id).git_diff_sha256 = "d" * 64
        if config is not None:
            set_run_config(session, run_id, config_json=json.dumps(config, sort_keys=True), config_hash="c" * 64,
                           config_path=str(work / "config.yaml"))
        for lang in LANGS:
            job(f"demo_shard/{lang}", "demo_shard", [], [f"data/raw/{lang}.jsonl.zst"], wildcards={"lang": lang})
            job(f"clean_shard/{lang}", "clean_shard", [f"data/raw/{lang}.jsonl.zst"],
                [f"data/clean/{lang}.jsonl.zst", f"data/stats/{lang}.json"], wildcards={"lang": lang}, threads=2)
        job("blend", "blend", [f"data/stats/{lang}.json" for lang in LANGS], ["data/blend/blend.json"])
        job("train_tokenizer", "train_tokenizer", [f"data/clean/{lang}.jsonl.zst" for lang in LANGS], ["tokenizer"])
        job("tokenizer_parity", "tokenizer_parity", ["tokenizer"], ["reports/tokenizer_parity.json"])
        for lang in LANGS:
            job(f"tokenize/{lang}", "tokenize_language", [f"data/clean/{lang}.jsonl.zst", "tokenizer"],
                [f"data/tokenized/{lang}/ntrex.train.bin", f"data/tokenized/{lang}/ntrex.train.idx"], wildcards={"lang": lang})
        job("pretrain", "pretrain", ["data/blend/blend.json", "tokenizer"] + [f"data/tokenized/{lang}/ntrex.train.bin" for lang in LANGS],
            ["train/checkpoints", "train/train_log.jsonl"], duration=PRETRAIN_MINUTES, threads=4)
        job("export_hf", "export_hf", ["train/checkpoints", "tokenizer"], ["hf"])
        job("evaluation_report", "evaluation_report", ["hf"], ["eval/report.json"])
        job("gguf", "gguf", ["hf"], ["quantized/demo-Q8_0.gguf"])
        end_run(session, run_id, T0 + dt.timedelta(minutes=clock[0]), "success")
        session.commit()
    return Recorded(work, engine, run_id, jobs, minutes)


@pytest.fixture
def demo(tmp_path):
    recorded = record_demo_run(tmp_path / "wf")
    yield recorded
    recorded.engine.dispose()


def add_slurm(recorded: Recorded, job: str, **fields) -> None:
    with session_factory(recorded.engine)() as session:
        session.add(SlurmJob(job_id=recorded.jobs[job], **fields))
        session.commit()


def by_lang(card: dict) -> dict[str, dict]:
    return {entry["lang"]: entry for entry in card["training_data"]["languages"]}


# --- model ---------------------------------------------------------------------------------------


def test_parameter_count_of_a_tiny_llama_by_hand():
    # V=1000, h=64, 4 heads of 16 dims, 2 KV groups (k, v: 64 x 32), ffn 160, 2 layers
    embedding = 1000 * 64
    attention_per_layer = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64  # q, k, v, o
    mlp_per_layer = 3 * 64 * 160  # gate, up, down
    norms = 2 * (2 * 64) + 64  # two RMSNorms per layer, one final
    untied = 2 * embedding + 2 * (attention_per_layer + mlp_per_layer) + norms
    assert untied == 214_336
    counts = parameter_count(MODEL, 1000)
    assert counts["total"] == untied
    assert counts["non_embedding"] == untied - 2 * embedding
    assert parameter_count(MODEL | {"tie_embeddings": True}, 1000)["total"] == untied - embedding == 150_336
    # without num_query_groups there is one KV head per query head; TP pads the vocabulary
    mha = parameter_count({k: v for k, v in MODEL.items() if k != "num_query_groups"}, 1000)["total"]
    assert mha == untied + 2 * 2 * 64 * 32
    assert parameter_count(MODEL, 999, tensor_parallel_size=4)["embedding"] == 1000 * 64


def test_model_section_shape_parameters_and_tokens_seen(demo):
    model = training_card(demo.engine, demo.run_id)["model"]
    assert model["name"] == "demo" and model["description"] == CONFIG["run"]["description"]
    assert model["shape"]["num_query_groups"] == 2 and model["shape"]["head_dim"] == 16
    assert model["shape"]["vocab_size"] == 1000
    assert model["parameters"]["total"] == 214_336
    training = model["training"]
    assert (training["train_steps"], training["global_batch_size"], training["seq_length"]) == (10, 4, 32)
    assert training["tokens_seen"] == TOKENS_SEEN == 1280
    log = model["training_log"]
    assert (log["last_step"], log["last_valid_loss"]) == (10, 8.05)
    assert log["file"]["on_disk"] == "unchanged"


# --- training data, sampling, tokenizer ----------------------------------------------------------


def test_training_data_per_language_documents_tokens_weights_and_licence(demo):
    card = training_card(demo.engine, demo.run_id[:8])  # a prefix of the id is enough
    data = card["training_data"]
    assert data["source"]["kind"] == "ntrex-demo"
    assert data["source"]["licence"] == "CC BY-SA 4.0"
    assert "NTREX-128" in data["source"]["name"] and "Federmann" in data["source"]["citation"]
    langs = by_lang(card)
    assert list(langs) == list(LANGS)
    for lang in LANGS:
        docs_in, docs_out, bytes_in, bytes_out, chars_out, short, dup = STATS[lang]
        entry = langs[lang]
        assert (entry["raw_documents"], entry["documents"], entry["raw_bytes"], entry["bytes"]) == (docs_in, docs_out, bytes_in, bytes_out)
        assert entry["removed"]["too_short"] == short and entry["removed"]["duplicate"] == dup
        assert entry["tokens"] == TOKENS[lang]
        assert entry["weight"] == WEIGHTS[lang]
        assert entry["expected_training_tokens"] == round(WEIGHTS[lang] * TOKENS_SEEN)
        assert math.isclose(entry["epochs_by_tokens"], WEIGHTS[lang] * TOKENS_SEEN / TOKENS[lang])
        [shard] = entry["raw_shards"]
        raw = demo.path(f"data/raw/{lang}.jsonl.zst")
        assert shard["path"] == f"results/demo/data/raw/{lang}.jsonl.zst"
        assert (shard["sha256"], shard["size"], shard["on_disk"]) == (observe(raw).sha256, raw.stat().st_size, "present")
    assert data["totals"]["documents"] == 18 and data["totals"]["tokens"] == 2700

    sampling = card["sampling"]
    assert sampling["policy"] == "temperature" and sampling["config"]["alpha"] == 0.3
    assert sampling["weights"] == WEIGHTS
    assert sampling["blend_params"]["size_unit"] == "chars"

    tokenizer = card["tokenizer"]
    assert (tokenizer["type"], tokenizer["vocab_size"]) == ("sentencepiece-bpe", 1000)
    assert tokenizer["artifact"]["sha256"] == observe(demo.path("tokenizer")).sha256
    assert tokenizer["parity"]["max_parity"] == {"lang": "fr", "parity": 1.2}
    assert tokenizer["parity"]["mean_parity"] == pytest.approx(1.1)


def test_missing_files_are_reported_not_omitted(demo):
    demo.path("data/raw/fr.jsonl.zst").unlink()
    demo.path("data/stats/fr.json").unlink()
    demo.path("eval/report.json").unlink()
    demo.path("quantized/demo-Q8_0.gguf").unlink()
    card = training_card(demo.engine, demo.run_id)
    fr = by_lang(card)["fr"]
    [shard] = fr["raw_shards"]  # still known from the cleaning job's recorded input
    assert shard["on_disk"] == "missing" and shard["sha256"] == demo_sha(demo, "data/raw/fr.jsonl.zst")
    assert fr["documents"] == fr["bytes"] == fr["removed"] == NOT_RECORDED
    assert fr["statistics_file"]["on_disk"] == "missing"
    assert fr["tokens"] == TOKENS["fr"]  # from the recorded size of the indexed dataset
    assert card["training_data"]["totals"]["documents"] == NOT_RECORDED
    assert any("data/stats/fr.json is missing" in note for note in card["training_data"]["notes"])
    evaluation = card["evaluation"]
    assert evaluation["bpb"] == evaluation["multiple_choice"] == NOT_RECORDED
    assert evaluation["report"]["on_disk"] == "missing"
    [gguf] = card["outputs"]["quantized_model"]
    assert gguf["on_disk"] == "missing" and gguf["sha256"] != NOT_RECORDED

    markdown = card_markdown(card)
    assert "Bits per byte: not recorded" in markdown and "missing" in markdown


def demo_sha(demo: Recorded, relative: str) -> str:
    """The sha256 recorded for a file of the demo run (read back from the database)."""
    from euroflow.provenance.queries import run_detail

    path = str(demo.path(relative))
    return next(a["sha256"] for a in run_detail(demo.engine, demo.run_id)["artifacts"] if a["path"] == path)


def test_changed_file_is_flagged(demo):
    blend = json.loads(demo.path("data/blend/blend.json").read_text())
    blend["languages"][0]["weight"] = 0.9
    _json(demo.path("data/blend/blend.json"), blend)
    card = training_card(demo.engine, demo.run_id)
    assert card["sampling"]["blend_file"]["on_disk"] == "changed"
    assert any("has changed since the run" in note for note in card["training_data"]["notes"])


# --- evaluation, outputs, provenance --------------------------------------------------------------


def test_evaluation_outputs_and_provenance(demo):
    card = training_card(demo.engine, demo.run_id)
    bpb = card["evaluation"]["bpb"]
    assert {lang: row["bpb"] for lang, row in bpb["languages"].items()} == BPB
    assert bpb["macro_mean_bpb"] == pytest.approx(3.375)
    assert card["evaluation"]["multiple_choice"]["tasks"]["xcopa"]["it"]["acc"] == 0.6

    outputs = card["outputs"]
    [checkpoint] = outputs["checkpoint"]
    [hf] = outputs["hf_export"]
    [gguf] = outputs["quantized_model"]
    assert checkpoint["kind"] == "directory" and checkpoint["sha256"] == observe(demo.path("train/checkpoints")).sha256
    assert hf["path"] == "results/demo/hf"
    assert gguf["size"] == 304 and gguf["on_disk"] == "present"
    assert gguf["mean_bpb"] == NOT_RECORDED  # no quantization quality report in this run

    prov = card["provenance"]
    assert prov["run_id"] == RUN_ID and prov["git_commit"] == "a" * 40 and prov["git_dirty"] is True
    assert prov["git_diff_sha256"] == "d" * 64 and prov["config_hash"] == "c" * 64
    assert prov["snakemake_version"] == "9.27.1" and prov["status"] == "success"
    assert prov["started_at"].startswith("2025-03-01T08:00:00")


# --- compute ---------------------------------------------------------------------------------------


def test_compute_without_slurm_is_a_local_cpu_run(demo):
    compute = training_card(demo.engine, demo.run_id)["compute"]
    [site] = compute["sites"]
    assert site["site"] == "local" and site["accounting"] == NO_SLURM
    assert site["jobs"] == len(demo.minutes)
    assert site["wall_hours"] == pytest.approx(sum(demo.minutes) / 60)
    assert site["cpu_wall_hours"] == site["wall_hours"]
    # clean_shard runs with 2 threads, pretrain with 4, the rest with 1
    core_minutes = sum(demo.minutes) + 2 * 1 + 3 * PRETRAIN_MINUTES
    assert site["cpu_core_hours"] == pytest.approx(core_minutes / 60)
    assert site["gpu_hours"] == NOT_RECORDED and site["energy"] == NO_ENERGY
    assert compute["by_rule"][0]["rule"] == "pretrain"


def test_compute_gpu_hours_and_energy_from_slurm_records(demo):
    with session_factory(demo.engine)() as session:
        session.get(Run, demo.run_id).site = "leonardo-booster"
        session.commit()
    records = [  # (job, elapsed_s, gpus, nodes, energy_j): pretrain requeued once, the tokenizer on a CPU node
        ("pretrain", 3600.0, 4, 1, 3.6e6),
        ("pretrain", 1800.0, 4, 1, 1.8e6),
        ("train_tokenizer", 900.0, 0, 1, None),
    ]
    for n, (job, elapsed, gpus, nodes, energy) in enumerate(records):
        add_slurm(demo, job, slurm_jobid=str(1000 + n), partition="boost_usr_prod" if gpus else "dcgp_usr_prod",
                  gpus=gpus, num_nodes=nodes, elapsed_s=elapsed, energy_j=energy, state="COMPLETED",
                  max_rss_bytes=2**30 * (n + 1))
    card = training_card(demo.engine, demo.run_id)
    [site] = card["compute"]["sites"]
    assert site["site"] == "leonardo-booster" and site["slurm_allocations"] == 3
    expected_gpu_hours = sum(elapsed * gpus for _, elapsed, gpus, _, _ in records) / 3600
    assert site["gpu_hours"] == pytest.approx(expected_gpu_hours) == pytest.approx(6.0)
    assert site["node_hours"] == pytest.approx((3600 + 1800 + 900) / 3600)
    assert site["energy_kwh"] == pytest.approx((3.6e6 + 1.8e6) / 3.6e6) == pytest.approx(1.5)
    assert "2 of 3 allocations" in site["energy"]
    assert site["partitions"] == ["boost_usr_prod", "dcgp_usr_prod"]
    assert site["max_rss_bytes"] == 3 * 2**30
    pretrain = next(r for r in card["compute"]["by_rule"] if r["rule"] == "pretrain")
    assert pretrain["gpu_hours"] == pytest.approx(6.0)
    assert card["provenance"]["site"] == "leonardo-booster"
    markdown = card_markdown(card)
    assert "| GPU-hours (sum of elapsed x GPUs) | 6 |" in markdown
    assert "| energy (kWh) | 1.5 |" in markdown


def test_slurm_without_energy_says_not_reported(demo):
    add_slurm(demo, "pretrain", slurm_jobid="77", gpus=2, num_nodes=1, elapsed_s=7200.0, energy_j=None)
    [site] = training_card(demo.engine, demo.run_id)["compute"]["sites"]
    assert site["gpu_hours"] == pytest.approx(4.0)
    assert site["energy_kwh"] == NOT_RECORDED and site["energy"] == NO_ENERGY


# --- sources, files, errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, licence",
    [("hplt", "licence of the underlying web content varies"), ("hplt", "CC0 1.0"), ("common-crawl-dump", "unknown")],
)
def test_source_licence_table(tmp_path, kind, licence):
    config = json.loads(json.dumps(CONFIG))
    config["data"]["source"] = {"kind": kind, "shards": "/data/hplt-v2"}
    engine = open_db(tmp_path / "p.sqlite")
    with session_factory(engine)() as session:
        start_run(session, RUN_ID, T0, workdir=str(tmp_path))
        set_run_config(session, RUN_ID, config_json=json.dumps(config), config_hash="c" * 64)
        session.commit()
    card = training_card(engine, RUN_ID)
    assert licence in card["training_data"]["source"]["licence"]
    assert card["training_data"]["source"]["shards"] == "/data/hplt-v2"
    # a run without jobs: everything it would have recorded is "not recorded", nothing is left out
    fr = by_lang(card)["fr"]
    assert fr["documents"] == fr["tokens"] == fr["weight"] == fr["raw_shards"] == NOT_RECORDED
    assert card["tokenizer"]["artifact"] == card["outputs"]["checkpoint"] == NOT_RECORDED
    assert card["evaluation"]["bpb"] == NOT_RECORDED
    assert card["model"]["parameters"]["total"] == 214_336  # the shape is in the config
    engine.dispose()


def test_run_without_config(tmp_path):
    engine = open_db(tmp_path / "p.sqlite")
    with session_factory(engine)() as session:
        start_run(session, RUN_ID, T0, workdir=str(tmp_path))
        session.commit()
    card = training_card(engine, RUN_ID)
    assert card["model"]["parameters"] == card["model"]["training"]["tokens_seen"] == NOT_RECORDED
    assert card["training_data"]["source"]["licence"] == "unknown"
    assert card["training_data"]["languages"] == [] and card["training_data"]["totals"]["tokens"] == NOT_RECORDED
    card_markdown(card)  # renders
    engine.dispose()


def test_write_card_writes_markdown_and_json(demo, tmp_path):
    out = tmp_path / "card"
    md_path, json_path = write_card(demo.engine, demo.run_id, out)
    assert (md_path, json_path) == (out / "card.md", out / "card.json")
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "card.md"]  # no temporary files left
    card = json.loads(json_path.read_text(encoding="utf-8"))
    assert card == training_card(demo.engine, demo.run_id)
    assert set(card) >= {"model", "training_data", "sampling", "tokenizer", "compute", "evaluation", "outputs", "provenance"}
    markdown = md_path.read_text(encoding="utf-8")
    for heading in ("1. Model", "2. Training data", "3. Sampling", "4. Tokenizer", "5. Compute", "6. Evaluation",
                    "7. Outputs", "8. Provenance"):
        assert f"\n## {heading}\n" in markdown
    assert "| total | 214,336 |" in markdown
    assert "| de (German) | 12 | 5,000 | 10 | 4,000 | too_short 1, duplicate 1 | 1,500 | 0.55 |" in markdown
    assert "CC BY-SA 4.0" in markdown and NO_SLURM in markdown


def test_unknown_run_raises_and_writes_nothing(demo, tmp_path):
    out = tmp_path / "card"
    with pytest.raises(EuroflowError, match="no such run"):
        write_card(demo.engine, "ffffffff", out)
    assert not out.exists()
    with pytest.raises(EuroflowError):
        training_card(demo.engine, "nope")
