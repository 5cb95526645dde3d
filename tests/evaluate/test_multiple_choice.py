import json

import pytest

from euroflow.errors import EuroflowError
from euroflow.evaluate.cli import main as evaluate_main
from euroflow.evaluate.model import load_model, load_tokenizer
from euroflow.evaluate.multiple_choice import (
    Item,
    choice_request,
    load_items,
    predictions,
    prompt_and_choices,
    score_items,
)
from euroflow.evaluate.scoring import score_requests


def test_prediction_rules_acc_acc_norm_and_bytes():
    # total log-likelihood prefers the short choice; per character the long one
    assert predictions([-10.0, -12.0], ["ab", "abcdef"]) == (0, 1, 1)
    # per character "жж" loses (-3.0 vs -1.83), per UTF-8 byte it wins (-1.5 vs -1.83)
    assert predictions([-6.0, -5.5], ["жж", "abc"]) == (1, 1, 0)
    # ties go to the first choice, as numpy.argmax does
    assert predictions([-1.0, -1.0], ["a", "b"]) == (0, 0, 0)


def test_scoring_picks_the_choice_the_model_finds_more_likely(tiny_model_dir, data_root):
    model = load_model(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    lines = (data_root / "parallel" / "ntrex128" / "en.txt").read_text(encoding="utf-8").splitlines()[:8]
    # the real sentence against as many characters of a script the model never saw (math symbols)
    def unseen(text):
        return "".join(chr(0x2200 + ord(c) % 200) for c in text)

    items = [
        Item(id=str(i), lang="en", source="constructed", context=None, question="Which is English?",
             choices=[unseen(line), line] if i % 2 else [line, unseen(line)], answer=1 if i % 2 else 0)
        for i, line in enumerate(lines)
    ]
    result = score_items(model, tokenizer, "exams", items, batch_size=5)
    assert result["n"] == 8 and result["chance"] == 0.5
    # the per-item log-likelihoods are the scorer's, and the prediction is their argmax
    for item, scored in zip(items, result["items"]):
        context, choices = prompt_and_choices("exams", item)
        direct = [-score_requests(model, [choice_request(tokenizer, context, " " + c)])[0].nll for c in choices]
        assert scored["loglik"] == pytest.approx(direct, rel=1e-5)
        assert scored["pred"] == max(range(2), key=lambda k: direct[k])
    assert result["acc"] == 1.0 and result["acc_norm"] == 1.0 and result["acc_norm_bytes"] == 1.0


def test_xcopa_prompt_is_lm_eval_harness_prompt():
    item = Item(id="x", lang="it", source="xcopa", context="L'uomo aprì il rubinetto.", question="effect",
                choices=["Il gabinetto si riempì d'acqua.", "Dell'acqua fluì dal beccuccio."], answer=1)
    context, choices = prompt_and_choices("xcopa", item)
    assert context == "L'uomo aprì il rubinetto quindi"
    assert choices == ["il gabinetto si riempì d'acqua.", "dell'acqua fluì dal beccuccio."]
    cause = Item(id="y", lang="tr", source="xcopa", context="Kız sınavı geçti.", question="cause",
                 choices=["Çok çalıştı.", "Uyudu."], answer=0)
    assert prompt_and_choices("xcopa", cause)[0] == "Kız sınavı geçti çünkü"


def test_choice_request_splits_context_and_continuation(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    request = choice_request(tokenizer, "Question: Where?\nAnswer: ", "In Berlin")  # trailing space moves over
    assert request.ids[0] == tokenizer.bos_id
    assert request.ids[1:] == tokenizer.encode("Question: Where?\nAnswer: In Berlin")
    assert request.ids[1 : request.first_target] == tokenizer.encode("Question: Where?\nAnswer:")
    assert tokenizer.processor.decode(request.ids[request.first_target :]) .strip() == "In Berlin"


def test_load_items_takes_first_n_and_reports_bad_lines(tmp_path, data_root):
    items = load_items(data_root / "mc" / "xcopa" / "et.jsonl", max_items=3)
    assert [i.id for i in items] == [json.loads(line)["id"] for line in (data_root / "mc" / "xcopa" / "et.jsonl").read_text().splitlines()[:3]]
    bad = tmp_path / "bad.jsonl"
    good = {"id": "a", "lang": "en", "source": "t", "context": None, "question": "q", "choices": ["x", "y"], "answer": 0}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "answer": 2}) + "\n")
    with pytest.raises(EuroflowError, match=r"bad.jsonl:2: field 'answer'"):
        load_items(bad)


def test_cli_mc_on_real_tasks(tiny_model_dir, data_root, tmp_path):
    out = tmp_path / "mc.json"
    assert evaluate_main(["mc", "--model", str(tiny_model_dir), "--data-root", str(data_root),
                          "--tasks", "xcopa,belebele", "--max-items", "6", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert set(document["tasks"]) == {"xcopa", "belebele"}
    assert set(document["tasks"]["xcopa"]) == {"et", "it", "tr"}
    assert set(document["tasks"]["belebele"]) == {"de", "en"}
    for task, chance in (("xcopa", 0.5), ("belebele", 0.25)):
        for r in document["tasks"][task].values():
            assert r["n"] == 6 and r["chance"] == chance
            assert 0.0 <= r["acc"] <= 1.0 and 0.0 <= r["acc_norm"] <= 1.0
    # Belebele passages exceed the fixture model's 64-token context: truncated from the left
    assert document["tasks"]["belebele"]["en"]["truncated_requests"] > 0


def test_unknown_task_is_a_one_line_error(tiny_model_dir, data_root, tmp_path):
    with pytest.raises(EuroflowError, match="unknown task 'hellaswag'"):
        evaluate_main(["mc", "--model", str(tiny_model_dir), "--data-root", str(data_root),
                       "--tasks", "hellaswag", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_long_choices_are_scored_not_rejected(tiny_model_dir):
    model = load_model(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    long_choice = "The committee met on Monday to discuss the new budget and many other things. " * 4
    item = Item(id="long", lang="en", source="constructed", context=None, question="q",
                choices=[long_choice, "ok"], answer=0)
    result = score_items(model, tokenizer, "exams", [item])
    assert result["truncated_requests"] == 1
    assert result["items"][0]["loglik"][0] < result["items"][0]["loglik"][1] < 0
