"""The 35 language keys euroflow trains on, with the codes other resources use for them.

``key`` is ISO 639-1 (plus ``sr-Latn``), as in the shared data bundle. ``hplt`` is the ISO 639-3 +
ISO 15924 code HPLT v2 / OpenEuroLLM use for the crawl (note the macrolanguage members: ``ekk`` for
Estonian, ``lvs`` for Latvian, ``als`` for Albanian). ``flores`` is the FLORES-200 code.
"""

from __future__ import annotations

from dataclasses import dataclass

from euroflow.errors import EuroflowError


@dataclass(frozen=True)
class Language:
    key: str
    name: str
    hplt: str
    flores: str
    group: str  # "eu" (official EU language), "candidate" or "other"

    @property
    def script(self) -> str:
        return self.hplt.split("_")[1]


_TABLE = [
    # key, English name, HPLT code, FLORES-200 code, group
    ("bg", "Bulgarian", "bul_Cyrl", "bul_Cyrl", "eu"),
    ("cs", "Czech", "ces_Latn", "ces_Latn", "eu"),
    ("da", "Danish", "dan_Latn", "dan_Latn", "eu"),
    ("de", "German", "deu_Latn", "deu_Latn", "eu"),
    ("el", "Greek", "ell_Grek", "ell_Grek", "eu"),
    ("en", "English", "eng_Latn", "eng_Latn", "eu"),
    ("es", "Spanish", "spa_Latn", "spa_Latn", "eu"),
    ("et", "Estonian", "ekk_Latn", "est_Latn", "eu"),
    ("fi", "Finnish", "fin_Latn", "fin_Latn", "eu"),
    ("fr", "French", "fra_Latn", "fra_Latn", "eu"),
    ("ga", "Irish", "gle_Latn", "gle_Latn", "eu"),
    ("hr", "Croatian", "hrv_Latn", "hrv_Latn", "eu"),
    ("hu", "Hungarian", "hun_Latn", "hun_Latn", "eu"),
    ("it", "Italian", "ita_Latn", "ita_Latn", "eu"),
    ("lt", "Lithuanian", "lit_Latn", "lit_Latn", "eu"),
    ("lv", "Latvian", "lvs_Latn", "lvs_Latn", "eu"),
    ("mt", "Maltese", "mlt_Latn", "mlt_Latn", "eu"),
    ("nl", "Dutch", "nld_Latn", "nld_Latn", "eu"),
    ("pl", "Polish", "pol_Latn", "pol_Latn", "eu"),
    ("pt", "Portuguese", "por_Latn", "por_Latn", "eu"),
    ("ro", "Romanian", "ron_Latn", "ron_Latn", "eu"),
    ("sk", "Slovak", "slk_Latn", "slk_Latn", "eu"),
    ("sl", "Slovenian", "slv_Latn", "slv_Latn", "eu"),
    ("sv", "Swedish", "swe_Latn", "swe_Latn", "eu"),
    ("sq", "Albanian", "als_Latn", "als_Latn", "candidate"),
    ("mk", "Macedonian", "mkd_Cyrl", "mkd_Cyrl", "candidate"),
    ("sr", "Serbian (Cyrillic)", "srp_Cyrl", "srp_Cyrl", "candidate"),
    ("sr-Latn", "Serbian (Latin)", "srp_Latn", "srp_Latn", "candidate"),
    ("bs", "Bosnian", "bos_Latn", "bos_Latn", "candidate"),
    ("tr", "Turkish", "tur_Latn", "tur_Latn", "candidate"),
    ("uk", "Ukrainian", "ukr_Cyrl", "ukr_Cyrl", "candidate"),
    ("ka", "Georgian", "kat_Geor", "kat_Geor", "candidate"),
    ("nb", "Norwegian Bokmål", "nob_Latn", "nob_Latn", "other"),
    ("nn", "Norwegian Nynorsk", "nno_Latn", "nno_Latn", "other"),
    ("is", "Icelandic", "isl_Latn", "isl_Latn", "other"),
]

LANGUAGES: dict[str, Language] = {row[0]: Language(*row) for row in _TABLE}
ALL_KEYS: tuple[str, ...] = tuple(LANGUAGES)


def suggestion(key: str) -> str | None:
    """The registry key a mistyped ``key`` most likely means: a language name (``German``), an
    HPLT or FLORES code (``deu_Latn``), another case (``DE``) or a close spelling (``sr-latn``)."""
    import difflib

    wanted = str(key).strip().casefold()
    for language in LANGUAGES.values():
        names = {language.key, language.name, language.hplt, language.flores, language.name.split(" (")[0]}
        if wanted in {name.casefold() for name in names}:
            return language.key
    folded = {k.casefold(): k for k in ALL_KEYS} | {lang.name.casefold(): lang.key for lang in LANGUAGES.values()}
    close = difflib.get_close_matches(wanted, list(folded), n=1, cutoff=0.75)
    return folded[close[0]] if close else None


def get(key: str) -> Language:
    try:
        return LANGUAGES[key]
    except (KeyError, TypeError):
        near = suggestion(key)
        hint = f"did you mean {near!r}?" if near else f"known: {', '.join(ALL_KEYS)}"
        raise EuroflowError(f"unknown language code {key!r}; {hint}") from None


def by_hplt_code(code: str) -> Language:
    for language in LANGUAGES.values():
        if language.hplt == code:
            return language
    raise EuroflowError(f"unknown HPLT language code {code!r}")


def resolve(keys: list[str] | str) -> list[str]:
    """Expand ``"all"`` and check every key; keeps the registry order."""
    if keys == "all":
        return list(ALL_KEYS)
    for key in keys:
        get(key)
    return list(keys)
