"""Megatron-core pretraining on CPU: learning, golden losses, exact resume (also after SIGKILL), DP/TP=2."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import train_corpus as corpus
from euroflow.errors import EuroflowError
from euroflow.train.checkpoint import LATEST_FILE
from euroflow.train.loop import pretrain

# First losses of the reference run (tiny test config, seed 1234, NTREX en/de/fr/pl, 1k BPE).
# A change here means the model, initialization, data order or loss changed: re-record on purpose only.
GOLDEN_LOSSES = [
    6.910322666168213,
    6.922483921051025,
    6.9213478565216064,
    6.906916379928589,
    6.893733263015747,
    6.831559181213379,
    6.723682403564453,
    6.647078275680542,
    6.57711386680603,
    6.528157711029053,
]
GOLDEN_TOLERANCE = 1e-3


def losses(log: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log]


def test_loss_decreases_and_outputs_are_complete(reference_run):
    out, log, summary = reference_run["out"], reference_run["log"], reference_run["summary"]
    assert [e["step"] for e in log] == list(range(1, 41))
    first, last5 = log[0]["loss"], sum(losses(log[-5:])) / 5
    assert last5 < first - 0.6, (first, last5)
    assert set(log[0]) >= {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"}
    assert log[0]["lr"] == 0.0 and log[4]["lr"] == pytest.approx(3.0e-3)  # warm-up, then the peak
    assert log[-1]["lr"] == pytest.approx(3.0e-4, rel=0.05)  # cosine decay to min_lr
    assert all(e["grad_norm"] > 0 for e in log)
    assert [e["step"] for e in log if "valid_loss" in e] == [10, 20, 30, 40]
    ckpts = out / "checkpoints"
    # the newest training.keep_checkpoints (default 3) are kept
    assert sorted(p.name for p in ckpts.iterdir()) == [f"iter_{i:07d}" for i in (20, 30, 40)] + [LATEST_FILE]
    assert (ckpts / LATEST_FILE).read_text().strip() == "40"
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "train_log.jsonl").read_text() == (out / "progress.jsonl").read_text()
    assert summary["finished"] and summary["last_step"] == 40 and summary["tokens_per_s"] > 0


def test_golden_loss_curve(reference_run):
    assert losses(reference_run["log"][: len(GOLDEN_LOSSES)]) == pytest.approx(GOLDEN_LOSSES, abs=GOLDEN_TOLERANCE)


def test_stop_and_resume_is_identical(tmp_path, train_inputs, reference_run):
    config = corpus.tiny_config()
    first = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=23)
    assert first["last_step"] == 23 and not first["finished"]
    assert len(corpus.read_log(tmp_path)) == 23
    assert not (tmp_path / "train_log.jsonl").exists() and not (tmp_path / "loss_curve.png").exists()
    second = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path)
    assert second["resumed_from"] == 20 and second["steps_run"] == 20
    log = corpus.read_log(tmp_path)
    assert [e["step"] for e in log] == list(range(1, 41))  # steps 21-23 were dropped and redone
    assert losses(log) == losses(reference_run["log"])  # exact float equality on CPU
    assert [e["grad_norm"] for e in log] == [e["grad_norm"] for e in reference_run["log"]]


def test_sigkill_and_resume_is_identical(tmp_path, train_inputs, reference_run):
    config = corpus.tiny_config()
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "euroflow.train.cli", "pretrain", "--config", str(config_path),
           "--blend", str(train_inputs["blend"]), "--tokenizer", str(train_inputs["tokenizer"]), "--out", str(out)]
    # its own session, so the kill also takes the checkpoint writer's helper processes
    stderr = open(tmp_path / "stderr.txt", "wb")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the in-process runs (conftest)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, env=env)
    latest = out / "checkpoints" / LATEST_FILE
    deadline = time.monotonic() + 120
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()[-2000:]
    killed_at = int(latest.read_text())
    assert killed_at < 40

    summary = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], out)
    assert summary["resumed_from"] == killed_at and summary["finished"]
    log = corpus.read_log(out)
    assert [e["step"] for e in log] == list(range(1, 41))
    assert losses(log) == losses(reference_run["log"])


def test_world_size_2_data_parallel_matches_one_process(tmp_path, train_inputs, reference_run):
    config = corpus.tiny_config(nproc=2, train_steps=40)
    summary = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=12)
    assert summary["world_size"] == 2 and summary["data_parallel_size"] == 2
    # the same global batches, split over two gloo ranks instead of two micro batches
    assert losses(corpus.read_log(tmp_path)) == pytest.approx(losses(reference_run["log"][:12]), abs=1e-5)


def test_world_size_2_tensor_parallel_matches_one_process(tmp_path, train_inputs, reference_run):
    config = corpus.tiny_config(nproc=2, tensor_model_parallel_size=2)
    summary = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=12)
    assert summary["world_size"] == 2 and summary["data_parallel_size"] == 1
    assert losses(corpus.read_log(tmp_path)) == pytest.approx(losses(reference_run["log"][:12]), abs=1e-4)


def test_bf16_without_gpus_is_refused(tmp_path, train_inputs):
    config = corpus.tiny_config(precision="bf16")
    with pytest.raises(EuroflowError, match="training.precision: bf16 needs GPUs"):
        pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_resume_refuses_a_different_model(tmp_path, train_inputs):
    config = corpus.tiny_config(train_steps=12, checkpoint_interval=2, warmup_steps=1)
    pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=2)
    config["model"]["ffn_hidden_size"] = 192
    with pytest.raises(EuroflowError, match="checkpoint"):
        pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path)
    assert json.loads((tmp_path / "progress.jsonl").read_text().splitlines()[-1])["step"] == 2
    assert not (tmp_path / "train_log.jsonl").exists()


def test_cli_reports_errors_in_one_line(tmp_path, train_inputs, capsys):
    from euroflow.train.cli import main

    config = corpus.tiny_config()
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    args = ["pretrain", "--config", str(config_path), "--tokenizer", str(train_inputs["tokenizer"]), "--out", str(tmp_path / "o")]
    assert main(args + ["--blend", str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"euroflow: error: {tmp_path / 'missing.json'}: blend file not found"


def _truncate(path):
    size = path.stat().st_size
    os.truncate(path, size // 2)
    return f"{path.name} is truncated or changed ({size // 2} of {size} bytes)"


def _garbage(path):
    path.write_bytes(b"\x00garbage" * (path.stat().st_size // 8) + b"\x00" * (path.stat().st_size % 8))
    return f"{path.name} is damaged (its sha256 differs from the one recorded when it was saved)"


def _remove(path):
    path.unlink()
    return f"{path.name} is missing"


DAMAGE = {
    "garbage common.pt": lambda ckpt: _garbage(ckpt / "common.pt"),
    "missing metadata.json": lambda ckpt: _remove(ckpt / "metadata.json"),
    "truncated shard": lambda ckpt: _truncate(ckpt / "__0_0.distcp"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_is_named_and_the_one_before_is_resumed(damage, tmp_path, train_inputs, reference_run, capfd):
    config = corpus.tiny_config()
    pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=30)
    latest = tmp_path / "checkpoints" / "iter_0000030"
    what = DAMAGE[damage](latest)
    capfd.readouterr()
    summary = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path)
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("euroflow: warning:")]
    assert warnings == [f"euroflow: warning: {latest}: damaged checkpoint, {what}; resuming from {tmp_path / 'checkpoints' / 'iter_0000020'}"]
    assert summary["resumed_from"] == 20 and summary["finished"]
    assert losses(corpus.read_log(tmp_path)) == losses(reference_run["log"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()) == ["iter_0000020", "iter_0000030", "iter_0000040"]


def test_export_names_a_damaged_checkpoint_and_the_intact_one_before(tmp_path, train_inputs, reference_run):
    import shutil

    from euroflow.train.export_hf import export_hf

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(reference_run["out"] / "checkpoints", ckpts)
    (ckpts / "iter_0000040" / "metadata.json").unlink()
    with pytest.raises(EuroflowError) as err:
        export_hf(corpus.tiny_config(), ckpts / "iter_0000040", train_inputs["tokenizer"], tmp_path / "hf")
    assert str(err.value) == (
        f"{ckpts / 'iter_0000040'}: damaged checkpoint, metadata.json is missing; the newest intact one before it is "
        f"{ckpts / 'iter_0000030'} (export it with --checkpoints)"
    )
    assert not (tmp_path / "hf").exists()


def _pretrain_cli(config_path, train_inputs, out, stderr, **popen):
    cmd = [sys.executable, "-m", "euroflow.train.cli", "pretrain", "--config", str(config_path),
           "--blend", str(train_inputs["blend"]), "--tokenizer", str(train_inputs["tokenizer"]), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, env=env, **popen)


def _wait_for(path, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path} did not appear"


def test_a_second_trainer_stops_the_first_and_resumes_from_its_checkpoint(tmp_path, train_inputs):
    """What a rerun meets after the Snakemake head was killed: the first trainer still running."""
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(corpus.tiny_config(train_steps=200, checkpoint_interval=10)))
    out = tmp_path / "out"
    first_err, second_err = open(tmp_path / "first.txt", "w+"), open(tmp_path / "second.txt", "w+")
    first = _pretrain_cli(config_path, train_inputs, out, first_err)
    _wait_for(out / "checkpoints" / "iter_0000010", first)
    second = _pretrain_cli(config_path, train_inputs, out, second_err)
    assert first.wait(timeout=120) == 1, (tmp_path / "first.txt").read_text()[-3000:]
    first_err.seek(0)
    stopped = [line for line in first_err.read().splitlines() if line.startswith("euroflow: error:")]
    assert len(stopped) == 1 and "because another trainer asked it to (STOP)" in stopped[0], stopped
    stopped_at = int(stopped[0].split("training stopped at step ")[1].split()[0])
    assert stopped_at < 200 and (out / "checkpoints" / f"iter_{stopped_at:07d}").is_dir()
    # the second trainer takes the lock as the first exits and may have logged its first step already
    first_log = corpus.read_log(out)[:stopped_at]
    assert [e["step"] for e in first_log] == list(range(1, stopped_at + 1))
    assert second.wait(timeout=600) == 0, (tmp_path / "second.txt").read_text()[-3000:]
    second_err.seek(0)
    assert f"euroflow: training in {out} is still run by pid {first.pid} on " in second_err.read()
    printed = second.stdout.read().decode()
    summary = json.loads(printed[printed.index("{\n"):])  # after the progress lines
    steps = [int(line.split(" step ")[1].split("/")[0]) for line in printed.splitlines() if " step " in line and line.startswith("[")]
    assert steps == list(range(stopped_at + 1, 201)), printed[:2000]  # a pipe, not a terminal: one line a step
    assert summary["resumed_from"] == stopped_at and summary["finished"]
    log = corpus.read_log(out)
    assert [e["step"] for e in log] == list(range(1, 201)) and log[:stopped_at] == first_log
    assert not (out / "STOP").exists()


def test_progress_lines_where_no_terminal_is():
    import io

    from euroflow.train.loop import _progress

    stream = io.StringIO()  # what Snakemake's tee or a Slurm output file gives the trainer
    with _progress(True, 10, 35, log_interval=10, stream=stream) as progress:
        for step in range(11, 36):
            progress(step, {"loss": 5.0 - step / 100, "lr": 3e-4, "grad_norm": 1.5, "tokens_per_s": 12345.6,
                            **({"valid_loss": 4.5} if step == 30 else {})})
    lines = stream.getvalue().splitlines()
    assert [line.split(" step ")[1].split(" ")[0] for line in lines] == ["20/35", "30/35", "35/35"]
    assert "| loss 4.8000 | lr 3.000e-04 | grad norm 1.500 | 12,346 tokens/s |" in lines[0]
    assert "valid loss 4.5000" in lines[1] and lines[2].endswith("ETA 0:00:00") and "peak memory" in lines[2]
    with _progress(True, 0, 1, stream=stream, mfu_per_token_s=1e-5) as progress:  # a peak given: the MFU too
        progress(1, {"loss": 1.0, "lr": 1.0, "tokens_per_s": 41234.0})
    assert "| 41,234 tokens/s | MFU 41.2% |" in stream.getvalue().splitlines()[-1]
    with _progress(False, 0, 5, stream=stream) as progress:  # the other ranks print nothing
        progress(5, {"loss": 1.0, "lr": 1.0, "tokens_per_s": 1.0})
    assert len(stream.getvalue().splitlines()) == 4


def test_killing_the_trainer_takes_its_ranks_with_it(tmp_path, train_inputs):
    import psutil

    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(corpus.tiny_config(nproc=2)))
    out = tmp_path / "out"
    proc = _pretrain_cli(config_path, train_inputs, out, subprocess.DEVNULL)
    _wait_for(out / "progress.jsonl", proc)
    ranks = psutil.Process(proc.pid).children(recursive=True)
    assert len([p for p in ranks if "spawn" in " ".join(p.cmdline())]) >= 2
    os.kill(proc.pid, signal.SIGKILL)  # the trainer only, as a user or the OOM killer would
    proc.wait()
    gone, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


_WRITE_RESULTS_SERVER = """
import os, signal, sys, time
from megatron.core.dist_checkpointing.strategies import filesystem_async
from euroflow.train import checkpoint
signal.signal(signal.SIGUSR2, lambda *_: None)  # the rank's own handler, as under Slurm
checkpoint._write_results_queue_dies_with_this_process()
print(checkpoint._WRITE_RESULTS_MANAGER._process.pid, flush=True)
sys.stdin.readline()  # the test has signalled the server
queue = filesystem_async._results_queue
queue.put("written")
print(queue.get(timeout=30), flush=True)
sys.stdin.readline()  # the test kills this process next
"""


def test_the_checkpoint_writers_queue_survives_the_slurm_time_limit_signal():
    """Slurm's --signal=USR2@N reaches every process of the step: megatron's write-results server,
    a fresh interpreter, died of it and the next save failed (EOFError or BrokenPipeError)."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", _WRITE_RESULTS_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        server = int(proc.stdout.readline())
        server_process = psutil.Process(server)
        for signum in (signal.SIGUSR2, signal.SIGUSR1):
            os.kill(server, signum)
        time.sleep(0.5)
        assert psutil.pid_exists(server) and psutil.Process(server).status() != psutil.STATUS_ZOMBIE
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs([server_process], timeout=30)  # it dies with its parent
        assert not alive
    finally:
        proc.kill()


def test_the_progress_lines_show_mfu_where_the_gpus_peak_is_known(tmp_path, train_inputs, capsys):
    from euroflow.sites.plan import flops_per_token

    config = corpus.tiny_config(peak_tflops=0.001)  # 1 GFLOP/s: the tiny model's MFU on a CPU core is then readable
    pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if " | loss " in line]
    entry = corpus.read_log(tmp_path)[-1]
    expected = entry["tokens_per_s"] * flops_per_token(config["model"], 1000) / 1e9
    assert f"| MFU {expected:.1%} |" in lines[-1], lines
