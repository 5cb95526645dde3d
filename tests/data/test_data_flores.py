"""FLORES reader and the Serbian Cyrillic -> Latin transliteration."""

from __future__ import annotations

import re

import pytest

from euroflow.data.flores import is_derived, load_flores, transliterate_sr_cyrl_to_latn
from euroflow.errors import EuroflowError


@pytest.mark.parametrize(
    "cyrillic, latin",
    [
        ("Љубав", "Ljubav"),
        ("ЉУБАВ", "LJUBAV"),
        ("Њега", "Njega"),
        ("ЊЕГОШ", "NJEGOŠ"),
        ("Џеп", "Džep"),
        ("ЏЕП", "DŽEP"),
        ("Ђорђе Ђоковић", "Đorđe Đoković"),
        ("шећер, чаша, жаба, ћуприја", "šećer, čaša, žaba, ćuprija"),
        ("Београд је главни град Србије.", "Beograd je glavni grad Srbije."),
        ("КОЊ и коњ, Њ.", "KONJ i konj, Nj."),
        ("Mixed ћирилица and Latin 123", "Mixed ćirilica and Latin 123"),
    ],
)
def test_transliteration_examples(cyrillic, latin):
    assert transliterate_sr_cyrl_to_latn(cyrillic) == latin


def test_transliteration_agrees_with_ntrex_serbian_latin(data_root):
    # NTREX ships both scripts (partly separate translations); most lines must match exactly
    ntrex = data_root / "parallel" / "ntrex128"
    cyr = (ntrex / "sr.txt").read_text(encoding="utf-8").split("\n")
    lat = (ntrex / "sr-Latn.txt").read_text(encoding="utf-8").split("\n")
    same = sum(transliterate_sr_cyrl_to_latn(c) == l for c, l in zip(cyr, lat))
    assert same >= 1300, same


def test_load_flores_splits_and_order(data_root):
    train_dev = load_flores(data_root, "en", ["train", "dev"])
    test = load_flores(data_root, "en", ["test"])
    assert len(train_dev) == 800 and len(test) == 204
    assert train_dev[0].startswith("On Monday, scientists from the Stanford University")
    assert set(train_dev).isdisjoint(test)
    assert len(load_flores(data_root, "ka", ["dev"])) == 99


def test_sr_latn_is_derived_from_sr(data_root):
    assert is_derived("sr-Latn") and not is_derived("sr")
    cyr = load_flores(data_root, "sr", ["train", "dev"])
    lat = load_flores(data_root, "sr-Latn", ["train", "dev"])
    assert len(lat) == 800 and lat == [transliterate_sr_cyrl_to_latn(s) for s in cyr]
    assert not any(re.search("[\u0400-\u04ff]", s) for s in lat)


def test_errors_name_file_and_fix(tmp_path, data_root):
    with pytest.raises(EuroflowError, match=r"flores200_sib200/de\.jsonl\.gz: FLORES file not found.*EUROFLOW_DATA"):
        load_flores(tmp_path, "de", ["dev"])
    with pytest.raises(EuroflowError, match="unknown FLORES split 'devtest'"):
        load_flores(data_root, "de", ["devtest"])
