"""euroflow plan (euroflow.sites.plan): eu-1b's budget on the four sites, limits, errors, the command
line, and throughput measured from runs recorded with the provenance recorder in a real database.

The shipped eu-1b (micro batch 2, TP=1, SDPA, the distributed optimizer) fits every site; the "does not
fit" cases build their own config: eu-1b at micro batch 4 without tensor parallelism under megatron's
unfused attention and a replicated optimizer (``TOO_BIG``)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import pytest
import yaml

from euroflow import cli, sites
from euroflow import config as run_config
from euroflow.errors import EuroflowError
from euroflow.provenance.db import open_db, session_factory
from euroflow.provenance.hashing import observe
from euroflow.provenance.recorder import end_run, fail_job, finish_job, record_slurm, set_run_config, start_job, start_run
from euroflow.sites import plan

EU_1B_PATH = run_config.REPO_ROOT / "workflow" / "configs" / "eu-1b.yaml"
TOKENS = 48_000 * 512 * 4096
# 6 N + 12 l h s, N: every parameter but the input embedding (1,306,617,856 in all)
FLOPS_PER_TOKEN = 6 * (1_306_617_856 - 65536 * 2048) + 12 * 22 * 2048 * 4096
T0 = dt.datetime(2026, 5, 4, 8, 0, 0)
PARAMETERS = 1_306_617_856
SBH = 4096 * 2048  # s*h of one sequence
GIB = 2**30
# eu-1b at micro batch 4 and TP=1 under the unfused attention, Adam's state on every GPU
TOO_BIG = {"micro_batch_size": 4, "tensor_model_parallel_size": 1, "attention": "unfused",
           "distributed_optimizer": False, "overlap_param_gather": False}
# the bf16 logits and their fp32 gradient while the loss is differentiated, per sequence
LOSS_MOMENT = 6 * 4096 * 65536
# split over TP per s*h: the QKV output (1 + 1), the rotated queries and keys (1 + 0.5), the context, x 2 bytes; the fp32
# log-sum-exp 4*16/2048, SwiGLU 5*2*5632/2048; unfused: 4 x 2 bytes, SwiGLU, the scores 6*16*4096/2048
SPLIT = {"sdpa": 9 + 4 * 16 / 2048 + 27.5, "unfused": 8 + 27.5 + 192}
# per layer, whatever the micro batch: the rotary cosines and sines for queries and keys, bf16
ROPE = 4 * 2 * 4096 * 128


def eu_1b(**training) -> dict:
    config = run_config.load(EU_1B_PATH)
    config["training"].update(training)
    return config


def eu_1b_file(tmp_path, **training):
    """eu-1b.yaml with ``training`` changed, written to ``tmp_path`` for the command line."""
    config = yaml.safe_load(EU_1B_PATH.read_text())
    config["training"].update(training)
    path = tmp_path / "eu-1b-changed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def activations_by_hand(tp: int, micro_batch: int, attention: str = "sdpa") -> float:
    """Bytes of activations of eu-1b under euroflow.sites.memory with PP=1 and bf16: per layer and sequence
    s*h*(16 + 2*2 + SPLIT/tp), 22 layers; token ids 16*s; the final norm's fp32 tensors and the output
    layer's input (8 + 2)*s*h; fp32 logits 4*s*65536/tp and the loss's moment 6*s*65536/tp; each layer's
    rotary tables once."""
    return micro_batch * (22 * (20 + SPLIT[attention] / tp) * SBH + 16 * 4096 + 10 * SBH + (4 * 4096 * 65536 + LOSS_MOMENT) / tp) + 22 * ROPE


def gib_by_hand(tp: int, micro_batch: int, attention: str = "sdpa", dp: int | None = None) -> float:
    """GiB per GPU: 2 + 4 + 12 bytes per parameter over TP (the 12 over ``dp`` with the distributed
    optimizer), the activations, a fixed 3 GiB."""
    per_parameter = 6 + 12 / dp if dp else 18
    return (per_parameter * PARAMETERS / tp + activations_by_hand(tp, micro_batch, attention) + 3 * GIB) / GIB


def test_the_hand_formula():
    assert 16 + 2 * 2 + SPLIT["unfused"] == 20 + 227.5 == 247.5 and SPLIT["sdpa"] == 36.53125
    # as pinned in tests/sites/test_memory.py: unfused TP=1 at micro batch 1 and 4; the shipped eu-1b on 16 GPUs
    assert round(gib_by_hand(1, 1, "unfused"), 2) == 70.11 and round(gib_by_hand(1, 4, "unfused"), 1) == 205.5
    assert round(gib_by_hand(1, 2, dp=16), 2) == 35.89


@pytest.mark.parametrize(
    "name, peak, nodes, gpu_hours, partition, qos, per_node, memory_gb",
    [
        ("lumi", 191.5, 16, 3376, "standard-g", None, 8, 64),
        ("leonardo", 312, 32, 2072, "boost_usr_prod", "normal", 4, 64),
        ("marenostrum5", 989, 4, 654, "acc", "acc_ehpc", 4, 64),
        ("snellius", 989, 2, 654, "gpu_h100", None, 4, 94),
    ],
)
def test_eu_1b_on_each_site(name, peak, nodes, gpu_hours, partition, qos, per_node, memory_gb):
    site = sites.load(name)
    config = eu_1b()
    training = config["training"]
    assert (training["micro_batch_size"], training["tensor_model_parallel_size"], training["attention"], training["distributed_optimizer"]) == (2, 1, "sdpa", True)
    result = plan.plan(config, site)
    assert result["tokens"]["budget"] == TOKENS == 100_663_296_000
    assert result["model"]["flops_per_token"] == FLOPS_PER_TOKEN == 9_248_993_280
    assert result["gpu"]["peak_bf16_tflops"] == peak
    rate = 0.40 * peak * 1e12 / FLOPS_PER_TOKEN
    assert result["throughput"] == {"kind": "assumed", "mfu": 0.4, "description": "assumed MFU 0.40", "tokens_per_s_per_gpu": rate}
    hours = result["hours"]
    assert hours["gpu"] == pytest.approx(TOKENS / rate / 3600) and round(hours["gpu"]) == gpu_hours
    assert hours["wall"] == pytest.approx(hours["gpu"] / result["gpus"]) and hours["wall"] > 0
    assert hours["node"] == pytest.approx(hours["wall"] * nodes)
    slurm = result["slurm"]
    assert (result["nodes"], slurm["partition"], slurm["qos"]) == (nodes, partition, qos)
    assert slurm["jobs"] == math.ceil(hours["wall"] / (slurm["max_hours"] - plan.MARGIN_HOURS)) == 1
    assert result["nodes_reason"] == "default: the fewest that finish in one job"
    for fewer in range(1, nodes):
        try:
            assert plan.plan(eu_1b(), site, nodes=fewer)["slurm"]["jobs"] > 1
        except EuroflowError as exc:  # a node count whose data-parallel size does not divide the batch
            assert "training.global_batch_size: 512 is not a multiple of micro_batch_size x data-parallel size" in str(exc)
    # the shipped TP=1 PP=1 at micro batch 2 fits: 2 + 4 bytes per parameter, Adam's 12 over the
    # data-parallel ranks, the activations, 3 GiB
    assert (result["gpu"]["per_node"], result["gpu"]["memory_gb"]) == (per_node, memory_gb)
    dp = nodes * per_node
    total = gib_by_hand(1, 2, dp=dp)
    assert 35 < total < 37
    assert result["memory"] == {
        "tp": 1, "pp": 1, "dp": dp, "micro_batch_size": 2,
        "gib": {
            "weights": round(2 * PARAMETERS / GIB, 2),
            "gradients": round(4 * PARAMETERS / GIB, 2),
            "optimizer": round(12 * PARAMETERS / dp / GIB, 2),
            "activations": round(activations_by_hand(1, 2) / GIB, 2),
            "overhead": 3.0,
            "total": round(total, 2),
            "stage": "only",
        },
        "usable_gib": round(0.9 * memory_gb, 1),
        "fits": True,
    }
    assert total <= 0.9 * memory_gb
    # layouts that fit, at the configured micro batch: the smallest model parallelism first, the shipped one
    layouts = result["fitting"]["layouts"]
    assert result["fitting"]["micro_batch_size"] == 2
    assert layouts[0] == {"tp": 1, "pp": 1, "dp": dp, "gib_per_gpu": round(total, 1)}
    assert {"tp": 2, "pp": 1, "dp": dp // 2, "gib_per_gpu": round(gib_by_hand(2, 2, dp=dp // 2), 1)} in layouts


@pytest.mark.parametrize(
    "name, nodes, per_node, fitting_micro_batch, first_layout",
    [
        ("lumi", 16, 8, 4, (8, 1)),  # 8 GCDs per node: TP=8 fits at micro batch 4
        ("leonardo", 32, 4, 2, (4, 1)),  # 4 GPUs of 64 GB per node: nothing at micro batch 4, TP=4 at 2
        ("marenostrum5", 4, 4, 2, (4, 1)),
        ("snellius", 2, 4, 4, (4, 1)),  # 94 GB: TP=4 at micro batch 4
    ],
)
def test_eu_1b_at_micro_batch_4_without_tp_fits_no_site(name, nodes, per_node, fitting_micro_batch, first_layout):
    result = plan.plan(eu_1b(**TOO_BIG), sites.load(name))
    assert result["nodes"] == nodes  # the same token budget and throughput as the shipped config
    mem = result["memory"]
    assert (mem["tp"], mem["pp"], mem["dp"], mem["micro_batch_size"]) == (1, 1, nodes * per_node, 4)
    assert mem["fits"] is False and mem["gib"]["total"] == round(gib_by_hand(1, 4, "unfused"), 2) == 205.46
    assert gib_by_hand(1, 4, "unfused") > 0.9 * 94
    tp, pp = first_layout
    assert result["fitting"]["micro_batch_size"] == fitting_micro_batch
    assert result["fitting"]["layouts"][0] == {
        "tp": tp, "pp": pp, "dp": nodes * per_node // (tp * pp), "gib_per_gpu": round(gib_by_hand(tp, fitting_micro_batch, "unfused"), 1),
    }


def test_a_long_run_on_few_nodes_is_a_chain_of_jobs():
    result = plan.plan(eu_1b(), sites.load("leonardo"), nodes=1)
    wall = result["hours"]["wall"]
    assert wall == pytest.approx(2072 / 4, rel=1e-3)
    assert result["slurm"]["jobs"] == math.ceil(wall / (24 - 0.5)) == 23
    assert result["nodes_reason"] == "--nodes"


def test_more_nodes_than_the_default_qos_takes_another_qos_and_then_fails():
    leonardo = sites.load("leonardo")
    assert plan.plan(eu_1b(tensor_model_parallel_size=4), leonardo, nodes=128)["slurm"]["qos"] == "boost_qos_bprod"
    with pytest.raises(EuroflowError, match=r"^--nodes: 300 exceeds partitions.boost_usr_prod.max_nodes \(256\) on leonardo$"):
        plan.plan(eu_1b(), leonardo, nodes=300)
    with pytest.raises(EuroflowError, match=r"partitions.standard-g.max_nodes \(1024\) on lumi"):
        plan.plan(eu_1b(), sites.load("lumi"), nodes=2048)


def test_node_counts_the_batch_cannot_take_are_errors():
    # 3 nodes x 4 GPUs / TP=1 = 12; 512 sequences / micro batch 2 = 256 micro batches
    # the trainer's own start-up check (euroflow.config.layout_problem)
    with pytest.raises(EuroflowError, match=re.escape("--nodes: training.global_batch_size: 512 is not a multiple of micro_batch_size x "
                                                      "data-parallel size = 2 x 12 (12 ranks of 3 nodes x 4 GPUs / TP x PP 1)")):
        plan.plan(eu_1b(), sites.load("leonardo"), nodes=3)
    # 3 x 4 / TP=1 = 12; 512 / 4 = 128
    with pytest.raises(EuroflowError, match=re.escape("--nodes: training.global_batch_size: 512 is not a multiple of micro_batch_size x "
                                                      "data-parallel size = 4 x 12")):
        plan.plan(eu_1b(**TOO_BIG), sites.load("leonardo"), nodes=3)
    with pytest.raises(EuroflowError, match="--nodes: 0 is not a positive"):
        plan.plan(eu_1b(), sites.load("leonardo"), nodes=0)


def test_a_site_without_gpus_is_an_error():
    with pytest.raises(EuroflowError, match="site 'local': defaults.gpu_partition: none, so no GPU nodes"):
        plan.plan(eu_1b(), sites.load("local"))


def test_a_layout_that_fits_and_smaller_micro_batches_when_none_does():
    snellius = plan.plan(eu_1b(micro_batch_size=4, tensor_model_parallel_size=4), sites.load("snellius"))
    assert snellius["memory"]["fits"] and snellius["memory"]["dp"] == 2
    assert snellius["memory"]["gib"]["total"] == round(gib_by_hand(4, 4, dp=2), 2) == 29.58
    assert snellius["fitting"]["micro_batch_size"] == 4
    # 4 GPUs of 64 GB per node: nothing fits at micro batch 4, TP=4 at micro batch 2
    leonardo = plan.plan(eu_1b(**TOO_BIG), sites.load("leonardo"))
    assert not leonardo["memory"]["fits"]
    assert leonardo["fitting"]["micro_batch_size"] == 2
    assert leonardo["fitting"]["layouts"][0] == {"tp": 4, "pp": 1, "dp": 32, "gib_per_gpu": round(gib_by_hand(4, 2, "unfused"), 1)}
    assert round(gib_by_hand(4, 2, "unfused"), 1) == 36.4


def test_mfu_scales_the_hours():
    lumi = sites.load("lumi")
    base = plan.plan(eu_1b(), lumi, nodes=8)
    half = plan.plan(eu_1b(), lumi, nodes=8, mfu=0.2)
    assert half["hours"]["gpu"] == pytest.approx(2 * base["hours"]["gpu"])
    with pytest.raises(EuroflowError, match=r"--mfu: 0.0 is not in \(0, 1\]"):
        plan.plan(eu_1b(), lumi, mfu=0.0)


def test_cli_json_prints_the_plan_then_fails_on_memory(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no results/provenance.sqlite here: the assumed MFU
    path = eu_1b_file(tmp_path, **TOO_BIG)
    assert cli.main(["plan", "--site", "lumi", "--config", str(path), "--json"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    # the nodes profiles/lumi submits (4), not the fewest that would finish in one job
    assert result["site"] == "lumi" and result["tokens"]["budget"] == TOKENS and result["nodes"] == 4
    assert result["throughput"]["description"] == "assumed MFU 0.40"
    assert result["memory"]["fits"] is False
    assert err.startswith(
        "euroflow: error: training.tensor_model_parallel_size/pipeline_model_parallel_size: "
        f"TP=1 PP=1 needs {gib_by_hand(1, 4, 'unfused'):.1f} GiB per GPU at micro batch 4, over the 57.6 GiB usable"
    )
    assert f"layouts that fit on 4 nodes: TP=8 PP=1 ({gib_by_hand(8, 4, 'unfused'):.1f} GiB), TP=8 PP=2" in err
    assert "TP=8 PP=1 (40.7 GiB)" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_the_shipped_config_fits_on_lumi(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    assert cli.main(["plan", "--site", "lumi", "--config", str(EU_1B_PATH)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for text in ("euroflow plan: eu-1b on lumi", "4 (32 GPUs; ", "profiles/lumi/config.v8+.yaml: set-resources.pretrain.nodes)",
                 f"{gib_by_hand(1, 2, dp=32):.1f} GiB with TP=1 PP=1 DP=32, micro batch 2: fits (57.6 GiB usable)",
                 "standard-g (48 h per job from ", "3 = ceil(105.5 h / (48 h - 0.5 h", "35.4 GiB with TP=1"):
        assert text in out
    assert "does NOT fit" not in out
    assert cli.main(["plan", "--site", "lumi", "--config", str(EU_1B_PATH), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["memory"]["fits"] is True and result["memory"]["gib"]["total"] == round(gib_by_hand(1, 2, dp=32), 2)


def test_cli_table_for_a_config_that_fits(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    config = yaml.safe_load(EU_1B_PATH.read_text())
    config["training"]["tensor_model_parallel_size"] = 4
    path = tmp_path / "eu-1b-tp4.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["plan", "--site", "snellius", "--config", str(path), "--nodes", "4"]) == 0
    out = capsys.readouterr().out
    for text in ("euroflow plan: eu-1b on snellius", "100.66 B tokens", "assumed MFU 0.40", "4 (16 GPUs; --nodes)",
                 "gpu_h100 (120 h per job from ", "fits (84.6 GiB usable)"):
        assert text in out


def test_cli_unknown_site(capsys):
    assert cli.main(["plan", "--site", "jupiter", "--config", str(EU_1B_PATH)]) == 1
    assert "euroflow: error: site 'jupiter': unknown" in capsys.readouterr().err


# -- measured throughput ---------------------------------------------------------------------------


def _train_log(path, rates):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(
        json.dumps({"step": i + 1, "loss": 9.0 - i * 0.1, "tokens_per_s": rate, "elapsed_s": 10.0 * (i + 1)}) + "\n"
        for i, rate in enumerate(rates)
    ))
    return path


def _record(session, run_id, *, site, config, log, gpus=None, partition=None, status="success", minutes=0):
    started = T0 + dt.timedelta(minutes=minutes)
    start_run(session, run_id, started, workdir=str(log.parent), site=site)
    set_run_config(session, run_id, config_json=json.dumps(config, sort_keys=True), config_hash=run_id[0] * 64)
    job = start_job(session, run_id, 1, rule="pretrain", started_at=started)
    ended = started + dt.timedelta(hours=1)
    if status == "success":
        finish_job(session, job.id, ended, [("output", observe(log))])
    else:
        fail_job(session, job.id, ended, error="killed", exit_status=1, outputs=[("output", observe(log))])
    if gpus is not None:
        record_slurm(session, job.id, {"slurm_jobid": f"{minutes + 1000}", "gpus": gpus, "partition": partition, "num_nodes": gpus // 8})
    end_run(session, run_id, ended, "success")


@pytest.fixture
def provenance(tmp_path):
    """Runs on LUMI and elsewhere, recorded with the provenance recorder; only run A counts for eu-1b on LUMI."""
    config = eu_1b()
    other_model = eu_1b()
    other_model["model"] = other_model["model"] | {"num_layers": 24}
    path = tmp_path / "prov.sqlite"
    engine = open_db(path)
    with session_factory(engine)() as session:
        # 16 GCDs: 160,000 tokens/s = 10,000 per GPU, after a slow first step
        _record(session, "a" * 8, site="lumi", config=config, gpus=16, partition="standard-g",
                log=_train_log(tmp_path / "a" / "train_log.jsonl", [40_000, 160_000, 160_000, 164_800]))
        with open(tmp_path / "a" / "train_log.jsonl", "a") as log:
            log.write('{"step": 5, "loss": 8.5, "tokens_per')  # cut short by the time limit
        _record(session, "b" * 8, site="leonardo", config=config, gpus=16, minutes=1,
                log=_train_log(tmp_path / "b" / "train_log.jsonl", [999_999] * 3))
        _record(session, "c" * 8, site="lumi", config=other_model, gpus=16, minutes=2,
                log=_train_log(tmp_path / "c" / "train_log.jsonl", [999_999] * 3))
        _record(session, "d" * 8, site="lumi", config=config, gpus=16, status="failed", minutes=3,
                log=_train_log(tmp_path / "d" / "train_log.jsonl", [999_999] * 3))
        _record(session, "e" * 8, site="lumi", config=config, gpus=8, partition="dev-g", minutes=4,
                log=_train_log(tmp_path / "e" / "train_log.jsonl", [999_999] * 3))
        session.commit()
    engine.dispose()
    return path


def test_measured_throughput_from_recorded_runs(provenance):
    measured = plan.measured_throughput(provenance, sites.load("lumi"), eu_1b())
    assert measured == plan.Measured(tokens_per_s_per_gpu=10_000.0, runs=("a" * 8,), steps=4)
    assert plan.measured_throughput(provenance, sites.load("marenostrum5"), eu_1b()) is None


def test_measured_throughput_without_slurm_uses_the_runs_nproc(tmp_path):
    path = tmp_path / "prov.sqlite"
    engine = open_db(path)
    with session_factory(engine)() as session:
        _record(session, "f" * 8, site="snellius", config=eu_1b(), log=_train_log(tmp_path / "train_log.jsonl", [80_000] * 3))
        session.commit()
    engine.dispose()
    measured = plan.measured_throughput(path, sites.load("snellius"), eu_1b())
    assert measured.tokens_per_s_per_gpu == 20_000.0  # training.nproc 4


def test_plan_and_cli_with_measured_throughput(provenance, capsys, monkeypatch, tmp_path):
    lumi = sites.load("lumi")
    measured = plan.measured_throughput(provenance, lumi, eu_1b())
    result = plan.plan(eu_1b(), lumi, throughput=measured, nodes=16)
    assert result["throughput"]["kind"] == "measured"
    assert result["throughput"]["mfu"] == pytest.approx(10_000 * FLOPS_PER_TOKEN / 191.5e12)
    assert result["hours"]["gpu"] == pytest.approx(TOKENS / 10_000 / 3600)

    monkeypatch.chdir(tmp_path)
    assert cli.main(["plan", "--site", "lumi", "--config", str(EU_1B_PATH), "--db", str(provenance), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["throughput"]["description"] == "measured: run aaaaaaaa, 10,000 tokens/s/GPU"
    assert out["memory"]["fits"] is True
    assert cli.main(["plan", "--site", "lumi", "--config", str(EU_1B_PATH), "--db", str(tmp_path / "missing.sqlite")]) == 1
    assert "no provenance database at this path" in capsys.readouterr().err


def test_when_no_node_count_finishes_in_one_job_the_default_is_the_most_allowed():
    lumi = sites.load("lumi")
    lumi["partitions"]["standard-g"]["max_nodes"] = 2
    result = plan.plan(eu_1b(), lumi)
    assert result["nodes"] == 2 and result["slurm"]["jobs"] == math.ceil(3376 / 16 / 47.5) == 5
    assert result["nodes_reason"] == "default: the most allowed, as no count finishes in one job"


@pytest.mark.parametrize("name", ["leonardo", "lumi", "marenostrum5", "snellius"])
def test_every_gpu_node_has_a_bf16_peak(name):
    for node in sites.load(name)["nodes"].values():
        assert bool(node.get("gpus")) == (node.get("peak_bf16_tflops", 0) > 0)


@pytest.mark.parametrize("name", ["leonardo", "lumi", "marenostrum5", "snellius"])
def test_every_gpu_node_says_how_it_is_billed(name):
    for node in sites.load(name)["nodes"].values():
        assert bool(node.get("gpus")) == ("billing" in node)


def test_the_billed_amount_is_in_the_sites_unit_not_in_devices():
    """LUMI's GPU-hour is a whole MI250X (2 GCDs): a GCD-hour, the 'GPU' torch sees, is half a billed unit."""
    lumi = plan.plan(eu_1b(), sites.load("lumi"))
    billed = lumi["hours"]["billed"]
    assert billed["unit"] == "GPU-hour" and billed["per_node_hour"] == 4
    assert billed["amount"] == pytest.approx(lumi["hours"]["gpu"] / 2) == pytest.approx(4 * lumi["hours"]["node"])
    row = dict(plan._rows(lumi))["billed"]  # noqa: SLF001 - the table row a user reads
    assert row.startswith(f"{billed['amount']:,.0f} GPU-hours (4 per node-hour; one GPU-hour = one MI250X module (2 GCDs)")
    snellius = plan.plan(eu_1b(), sites.load("snellius"))
    assert snellius["hours"]["billed"]["unit"] == "SBU"
    assert snellius["hours"]["billed"]["amount"] == pytest.approx(192 * snellius["hours"]["gpu"])
