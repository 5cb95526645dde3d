"""lm-evaluation-harness on the bundle's sets: its own evaluator against ours on the same items, offline."""

import json
import math
import socket

import pytest
import yaml

from euroflow.errors import EuroflowError
from euroflow.evaluate.cli import main as evaluate_main
from euroflow.evaluate.harness import evaluate_harness, task_configs
from euroflow.evaluate.model import load_model, load_tokenizer
from euroflow.evaluate.multiple_choice import load_items, score_items, task_path
from euroflow.evaluate.scoring import Request, score_requests

MC = [("belebele", "de"), ("belebele", "en"), ("exams", "hr"), ("exams", "de"), ("xcopa", "et")]
FLORES_LANGS = ["de", "sr-Latn", "ka"]
ITEMS = 12


@pytest.fixture(scope="module")
def long_model_dir(tmp_path_factory, data_root):
    # Belebele passages are ~500 tokens: a context long enough that neither evaluator truncates
    from tiny_model import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("tiny-llama-768"), data_root, max_positions=768, train_steps=20)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("test: no network at run time")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def harness_run(long_model_dir, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-eval")
    with pytest.MonkeyPatch.context() as patch:
        def refuse(*args, **kwargs):
            raise OSError("test: no network at run time")

        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        assert evaluate_main([
            "lm-eval", "--model", str(long_model_dir), "--data-root", str(data_root),
            "--sets", "belebele,exams,xcopa,flores", "--languages", "de,en,hr,et",
            "--flores-languages", ",".join(FLORES_LANGS), "--max-items", str(ITEMS), "--batch-size", "8",
            "--tasks-dir", str(out / "tasks"), "--out", str(out / "lm_eval.json"),
        ]) == 0
    return out


def test_lm_eval_accuracy_equals_ours_on_the_same_items(harness_run, long_model_dir, data_root):
    results = json.loads((harness_run / "lm_eval.json").read_text())["results"]
    model, tokenizer = load_model(long_model_dir), load_tokenizer(long_model_dir)
    for task, lang in MC:
        ours = score_items(model, tokenizer, task, load_items(task_path(data_root, task, lang), max_items=ITEMS), batch_size=8)
        theirs = results[f"euroflow_{task}_{lang}"]
        assert theirs["sample_len"] == ITEMS
        # the same items, prompts and tokens: the same predictions, item for item
        assert theirs["acc,none"] * ITEMS == pytest.approx(ours["acc"] * ITEMS, abs=1e-9), (task, lang)
        assert theirs["acc_norm,none"] * ITEMS == pytest.approx(ours["acc_norm"] * ITEMS, abs=1e-9), (task, lang)
    # a model that is not uniform: accuracies are not all the same figure
    assert len({results[f"euroflow_{t}_{lang}"]["acc,none"] for t, lang in MC}) > 1


def test_lm_eval_flores_bits_per_byte_is_our_scorer_on_bos_plus_sentence(harness_run, long_model_dir, data_root):
    from euroflow.evaluate.bpb import flores_sentences

    results = json.loads((harness_run / "lm_eval.json").read_text())["results"]
    model, tokenizer = load_model(long_model_dir), load_tokenizer(long_model_dir)
    for lang in FLORES_LANGS:
        sentences = flores_sentences(data_root, lang)[:ITEMS]
        scores = score_requests(model, [Request([tokenizer.bos_id, *ids], 1) for ids in tokenizer.encode_batch(sentences)],
                                batch_size=8, pad_id=tokenizer.unk_id)
        ours = math.fsum(s.nll for s in scores) / math.log(2) / sum(len(s.encode("utf-8")) for s in sentences)
        assert results[f"euroflow_flores_{lang.replace('-', '_')}"]["bits_per_byte,none"] == pytest.approx(ours, rel=1e-5), lang


def test_results_are_lm_evals_format_and_the_task_yaml_is_reusable(harness_run, data_root):
    document = json.loads((harness_run / "lm_eval.json").read_text())
    for key in ("results", "configs", "versions", "n-shot", "n-samples", "config", "lm_eval_version"):
        assert key in document, key
    assert document["config"]["limit"] == ITEMS
    assert document["euroflow"]["add_bos_token"] == {"loglikelihood and generation tasks": True, "loglikelihood_rolling tasks": False}
    names = sorted(p.stem for p in (harness_run / "tasks").glob("*.yaml"))
    assert names == sorted(document["results"])
    # exams in de and hr only (of the languages asked); FLORES in its own languages; sr-Latn derived
    assert "euroflow_exams_it" not in names and "euroflow_flores_sr_Latn" in names and "euroflow_flores_en" not in names
    from lm_eval.tasks._yaml_loader import load_yaml

    belebele = load_yaml(harness_run / "tasks" / "euroflow_belebele_de.yaml", resolve_func=False)
    assert belebele["dataset_kwargs"] == {"data_root": str(data_root.resolve()), "set": "belebele", "language": "de"}
    assert belebele["metadata"]["source"] == "euroflow data bundle: mc/belebele/de.jsonl.gz"
    assert "custom_dataset: !function euroflow_lm_eval_utils.bundle_dataset" in (harness_run / "tasks" / "euroflow_flores_sr_Latn.yaml").read_text()
    assert not list(harness_run.glob(".*tmp*"))


def test_the_report_puts_lm_evals_figures_beside_ours(harness_run, long_model_dir, data_root, tmp_path):
    mc = tmp_path / "mc.json"
    assert evaluate_main(["mc", "--model", str(long_model_dir), "--data-root", str(data_root), "--tasks", "xcopa",
                          "--languages", "et", "--max-items", str(ITEMS), "--out", str(mc)]) == 0
    out = [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"]
    assert evaluate_main(["report", "--mc", str(mc), "--lm-eval", str(harness_run / "lm_eval.json"),
                          "--out-json", str(out[0]), "--out-md", str(out[1]), "--out-png", str(out[2])]) == 0
    row = json.loads(out[0].read_text())["lm_eval"]["tasks"]["euroflow_xcopa_et"]
    assert row["acc"] == row["euroflow"]["acc"] and row["n"] == ITEMS
    line = next(line for line in out[1].read_text().splitlines() if line.startswith("| euroflow_xcopa_et |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == cells[5] == f"{row['acc']:.4f}"
    assert "| euroflow_flores_ka |" in out[1].read_text()


def test_a_partners_local_task_runs_beside_ours(long_model_dir, data_root, tmp_path, no_network):
    from euroflow.evaluate.harness import write_task_configs

    local = tmp_path / "partner"
    local.mkdir()
    docs = [{"q": "Das Wetter ist", "options": ["gut.", "\u2200\u2201\u2202."], "label": 0} for _ in range(3)]
    (local / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (local / "partner_task.yaml").write_text(yaml.safe_dump({
        "task": "partner_weather", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(local / "docs.jsonl")}}, "test_split": "test",
        "output_type": "multiple_choice", "doc_to_text": "{{q}}", "doc_to_choice": "options", "doc_to_target": "label",
        "metric_list": [{"metric": "acc"}],
    }))
    tasks = tmp_path / "tasks"
    write_task_configs(data_root, ["xcopa"], ["et"], tasks)
    result = evaluate_harness(long_model_dir, tasks, ["euroflow_xcopa_et", "partner_weather"], include_paths=[str(local)], limit=3)
    assert set(result["results"]) == {"euroflow_xcopa_et", "partner_weather"}
    assert result["results"]["partner_weather"]["acc,none"] == 1.0  # German words against symbols it never saw


def test_bad_input_is_one_line_naming_what_to_fix(long_model_dir, data_root, tmp_path):
    with pytest.raises(EuroflowError, match=r"--sets: unknown set 'hellaswag'; known: belebele, exams, xcopa, flores"):
        evaluate_main(["lm-eval", "--model", str(long_model_dir), "--data-root", str(data_root), "--sets", "hellaswag",
                       "--tasks-dir", str(tmp_path / "t"), "--out", str(tmp_path / "r.json")])
    with pytest.raises(EuroflowError, match=r"xcopa/et.jsonl: missing from the data bundle \(lm-eval task euroflow_xcopa_et\)"):
        task_configs(tmp_path, ["xcopa"], ["et"])
    tasks = tmp_path / "tasks"
    evaluate_main(["lm-eval-tasks", "--data-root", str(data_root), "--sets", "xcopa", "--languages", "et", "--out-dir", str(tasks)])
    with pytest.raises(EuroflowError, match=r"lm-eval include path .*nowhere: not a directory"):
        evaluate_harness(long_model_dir, tasks, ["euroflow_xcopa_et"], include_paths=[str(tmp_path / "nowhere")])
    with pytest.raises(EuroflowError, match=r"lm-eval: unknown task\(s\) no_such_task: not in .*tasks and lm-eval's own tasks"):
        evaluate_harness(long_model_dir, tasks, ["euroflow_xcopa_et", "no_such_task"])
    assert not (tmp_path / "r.json").exists()
