import pytest

from euroflow import languages
from euroflow.errors import EuroflowError

EU_OFFICIAL = "bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv".split()


def test_registry_has_the_35_keys():
    assert len(languages.ALL_KEYS) == 35
    assert [k for k, lang in languages.LANGUAGES.items() if lang.group == "eu"] == EU_OFFICIAL
    assert {"sq", "mk", "sr", "sr-Latn", "bs", "tr", "uk", "ka", "nb", "nn", "is"} <= set(languages.ALL_KEYS)


def test_codes_are_iso639_3_plus_script():
    codes = [lang.hplt for lang in languages.LANGUAGES.values()]
    assert len(set(codes)) == 35
    for code in codes:
        iso, script = code.split("_")
        assert len(iso) == 3 and iso.islower() and len(script) == 4 and script.istitle()
    assert languages.get("sq").hplt == "als_Latn"
    assert languages.get("sr").hplt == "srp_Cyrl" and languages.get("sr-Latn").hplt == "srp_Latn"
    assert languages.get("et").hplt == "ekk_Latn" and languages.get("et").flores == "est_Latn"
    assert languages.by_hplt_code("kat_Geor").key == "ka"


def test_data_bundle_covers_registry(data_root):
    ntrex = {p.stem for p in (data_root / "parallel" / "ntrex128").glob("*.txt")}
    assert ntrex == set(languages.ALL_KEYS)


def test_unknown_code_is_an_error():
    with pytest.raises(EuroflowError, match="unknown language code 'xx'"):
        languages.resolve(["de", "xx"])
