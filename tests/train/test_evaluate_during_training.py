"""Evaluation during training: due checkpoints evaluated by their own processes while training goes on."""

import json

import pytest
import yaml

import train_corpus as corpus
from euroflow.errors import EuroflowError
from euroflow.evaluate.cli import main as evaluate_main
from euroflow.evaluate.during_training import is_due
from euroflow.train.cli import main as train_main


def test_every_nth_checkpoint_is_due():
    assert [step for step in range(1, 61) if is_due(step, 10, 2)] == [20, 40, 60]
    assert not any(is_due(step, 10, 0) for step in range(1, 61))


@pytest.fixture(scope="module")
def run_with_evaluations(tmp_path_factory, train_inputs, data_root):
    out = tmp_path_factory.mktemp("during-training")
    config = corpus.tiny_config(train_steps=16, checkpoint_interval=4, keep_checkpoints=2)
    config["evaluation"]["during_training"] = {"every_n_checkpoints": 2, "max_sentences": 8}
    config["paths"] = {"data_root": str(data_root)}
    config_path = out / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert train_main(["pretrain", "--config", str(config_path), "--blend", str(train_inputs["blend"]),
                       "--tokenizer", str(train_inputs["tokenizer"]), "--out", str(out / "train")]) == 0
    return out, config


def test_due_checkpoints_are_evaluated_though_rotation_removed_them(run_with_evaluations):
    out, config = run_with_evaluations
    evaluations = out / "train" / "evaluations"
    # keep_checkpoints 2: only the last two checkpoints are left, yet every due one was evaluated from its snapshot
    assert sorted(p.name for p in (out / "train" / "checkpoints").glob("iter_*")) == ["iter_0000012", "iter_0000016"]
    points = [json.loads((evaluations / f"iter_{step:07d}.json").read_text()) for step in (8, 16)]
    assert [p["step"] for p in points] == [8, 16]
    assert all(set(p["languages"]) == set(config["evaluation"]["bpb_languages"]) for p in points)
    assert all(p["languages"][lang]["sentences"] == 8 for p in points for lang in p["languages"])
    assert points[-1]["macro_mean_bpb"] < points[0]["macro_mean_bpb"]  # the model learns
    assert all(p["export_max_abs_diff"] < 1e-4 for p in points)
    assert not (evaluations / ".snapshots").exists()


def test_the_learning_curve_table_and_plot(run_with_evaluations, tmp_path):
    out, config = run_with_evaluations
    files = [tmp_path / "curve.json", tmp_path / "curve.md", tmp_path / "curve.png"]
    assert evaluate_main(["learning-curve", "--evaluations", str(out / "train" / "evaluations"), "--run-name", "t",
                          "--out-json", str(files[0]), "--out-md", str(files[1]), "--out-png", str(files[2])]) == 0
    curve = json.loads(files[0].read_text())
    assert curve["steps"] == [8, 16] and curve["tokens"] == [8 * 8 * 64, 16 * 8 * 64]
    assert set(curve["languages"]) == set(config["evaluation"]["bpb_languages"]) and curve["failed"] == []
    markdown = files[1].read_text()
    assert "| language | step 8 | step 16 | change |" in markdown
    first = config["evaluation"]["bpb_languages"][0]
    assert f"| {first} | {curve['languages'][first][0]:.4f} |" in markdown

    import matplotlib.image

    assert matplotlib.image.imread(files[2])[..., :3].std() > 0.05


def test_no_evaluations_is_one_line_naming_the_setting(tmp_path):
    with pytest.raises(EuroflowError, match=r"no checkpoint evaluations \(evaluation.during_training.every_n_checkpoints"):
        evaluate_main(["learning-curve", "--evaluations", str(tmp_path), "--out-json", str(tmp_path / "c.json"),
                       "--out-md", str(tmp_path / "c.md"), "--out-png", str(tmp_path / "c.png")])
    assert not list(tmp_path.iterdir())
