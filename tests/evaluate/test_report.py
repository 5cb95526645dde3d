import json

import pytest

from euroflow.errors import EuroflowError
from euroflow.evaluate.cli import main as evaluate_main


@pytest.fixture(scope="module")
def results(tiny_model_dir, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    bpb, mc = out / "bpb.json", out / "mc.json"
    assert evaluate_main(["bpb", "--model", str(tiny_model_dir), "--data-root", str(data_root),
                          "--languages", "en,sr-Latn,ka", "--batch-size", "32", "--out", str(bpb)]) == 0
    assert evaluate_main(["mc", "--model", str(tiny_model_dir), "--data-root", str(data_root),
                          "--tasks", "belebele,exams,xcopa", "--max-items", "3", "--out", str(mc)]) == 0
    return bpb, mc


def test_report_json_markdown_and_png(results, tmp_path):
    bpb, mc = results
    out_json, out_md, out_png = tmp_path / "report.json", tmp_path / "report.md", tmp_path / "report.png"
    assert evaluate_main(["report", "--bpb", str(bpb), "--mc", str(mc), "--out-json", str(out_json),
                          "--out-md", str(out_md), "--out-png", str(out_png)]) == 0

    summary = json.loads(out_json.read_text())
    assert list(summary["bpb"]["languages"]) == ["en", "sr-Latn", "ka"]
    assert summary["bpb"]["baseline_bpb"] == 8.0
    en = summary["bpb"]["languages"]["en"]
    assert en["vs_baseline"] == pytest.approx(en["bpb"] / 8.0)
    assert set(summary["mc"]["tasks"]) == {"belebele", "exams", "xcopa"}
    assert len(summary["mc"]["tasks"]["exams"]) == 14
    assert all("items" not in r for per_lang in summary["mc"]["tasks"].values() for r in per_lang.values())

    markdown = out_md.read_text()
    assert f"| en | 204 | {en['bytes']} | {en['bpb']:.4f} |" in markdown
    assert "| sr-Latn * |" in markdown and "derived from sr" in markdown
    assert "| xcopa | et | 3 |" in markdown and "| 0.500 |" in markdown  # chance of 2 choices
    assert "| belebele | de | 3 |" in markdown and "| 0.250 |" in markdown

    import matplotlib.image

    image = matplotlib.image.imread(out_png)
    assert image.shape[0] > 400 and image.shape[1] > 800
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert not list(tmp_path.glob(".*tmp*"))


def test_report_with_bpb_only_and_bad_input_leaves_nothing(results, tmp_path):
    bpb, _ = results
    outputs = [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"]
    assert evaluate_main(["report", "--bpb", str(bpb), "--out-json", str(outputs[0]), "--out-md", str(outputs[1]),
                          "--out-png", str(outputs[2])]) == 0
    assert "Multiple choice" not in outputs[1].read_text()

    broken = tmp_path / "broken.json"
    broken.write_text('{"tasks": ')
    fresh = [tmp_path / "s.json", tmp_path / "s.md", tmp_path / "s.png"]
    with pytest.raises(EuroflowError, match=r"broken.json:1: malformed JSON"):
        evaluate_main(["report", "--bpb", str(bpb), "--mc", str(broken), "--out-json", str(fresh[0]),
                       "--out-md", str(fresh[1]), "--out-png", str(fresh[2])])
    assert not any(p.exists() for p in fresh)
