"""Name and address normalisation for probabilistic matching (pure).

German and international names are typed in many ways: with or without umlauts (Jürgen,
Juergen, Jurgen), ß or ss, upper case, accents dropped (José, Jose), as double names (Anna-Lena,
Müller-Lüdenscheidt) or nicknames (Kathi for Katharina). A name becomes its *forms*: the
German transliteration (ä → ae), the plain one (ä → a), each token of a double name, and the
full name a nickname stands for. Two names agree exactly when they share a form.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import jellyfish

_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_SPECIAL = str.maketrans(
    {"ß": "ss", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "\u0131": "i"}
)
_NOT_LETTER = re.compile(r"[^a-z\s-]")
_SPACES = re.compile(r"[\s-]+")

# Common German and international nicknames → the name they stand for (not exhaustive; a
# nickname missing here still scores through string similarity).
NICKNAMES: dict[str, str] = {
    "alex": "alexander",
    "sascha": "alexander",
    "sandro": "alexander",
    "andi": "andreas",
    "anni": "anna",
    "babsi": "barbara",
    "bea": "beate",
    "berni": "bernhard",
    "betti": "elisabeth",
    "lisa": "elisabeth",
    "elli": "elisabeth",
    "liesel": "elisabeth",
    "sissi": "elisabeth",
    "christl": "christine",
    "tina": "christina",
    "conny": "cornelia",
    "dani": "daniela",
    "dieti": "dietrich",
    "fritz": "friedrich",
    "franzi": "franziska",
    "gabi": "gabriele",
    "gerd": "gerhard",
    "gitti": "brigitte",
    "gretel": "margarete",
    "greta": "margarete",
    "grete": "margarete",
    "günni": "günther",
    "hansi": "hans",
    "hannes": "johannes",
    "jo": "johannes",
    "jojo": "johannes",
    "hanne": "johanna",
    "heiko": "heinrich",
    "heinz": "heinrich",
    "jupp": "josef",
    "sepp": "josef",
    "beppo": "josef",
    "kalle": "karl",
    "kathi": "katharina",
    "katja": "katharina",
    "kati": "katharina",
    "käthe": "katharina",
    "klaus": "nikolaus",
    "lena": "magdalena",
    "leni": "helene",
    "lene": "helene",
    "lotte": "charlotte",
    "lutz": "ludwig",
    "malu": "marie-luise",
    "mani": "manfred",
    "max": "maximilian",
    "maxi": "maximilian",
    "micha": "michael",
    "michi": "michael",
    "mike": "michael",
    "moni": "monika",
    "olli": "oliver",
    "peti": "peter",
    "resi": "theresa",
    "rike": "friederike",
    "steffi": "stefanie",
    "steff": "stefan",
    "susi": "susanne",
    "sanne": "susanne",
    "toni": "anton",
    "tom": "thomas",
    "tommy": "thomas",
    "uli": "ulrich",
    "ulla": "ursula",
    "uschi": "ursula",
    "vroni": "veronika",
    "wolle": "wolfgang",
    "willi": "wilhelm",
    "bill": "william",
    "will": "william",
    "bob": "robert",
    "rob": "robert",
    "bobby": "robert",
    "dick": "richard",
    "rick": "richard",
    "jim": "james",
    "jimmy": "james",
    "kate": "katherine",
    "katie": "katherine",
    "liz": "elizabeth",
    "beth": "elizabeth",
    "pepe": "jose",
    "paco": "francisco",
    "dima": "dmitri",
    "sasha": "alexander",
    "aga": "agnieszka",
    "memo": "mehmet",
    "ayse": "ayse",
}


def fold(value: str, german: bool) -> str:
    """Lower case, umlauts spelled out (german) or dropped, accents and punctuation removed."""
    text = value.casefold()
    text = text.translate(_GERMAN if german else _SPECIAL).translate(_SPECIAL)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _SPACES.sub(" ", _NOT_LETTER.sub("", text)).strip()


@dataclass(frozen=True)
class NameForms:
    full: str  # the German folding, tokens joined by one space
    forms: frozenset[str]  # the whole name in every spelling (umlauts, separators)
    tokens: frozenset[str]  # the parts of a double name
    canonical: frozenset[str]  # the names its tokens stand for (nicknames resolved)
    phonetic: str  # metaphone of the first token, for blocking


@lru_cache(maxsize=1 << 16)
def name_forms(value: str) -> NameForms | None:
    german, plain = fold(value, german=True), fold(value, german=False)
    if not german:
        return None
    # 'Juergen' typed for Jürgen: its umlaut-less spelling is a form too.
    undone = re.sub(r"(?<=[a-z])([aou])e", r"\1", german)
    forms = {german, plain, undone, german.replace(" ", ""), plain.replace(" ", "")}
    tokens = {t for t in set(german.split()) | set(plain.split()) if len(t) > 1}
    canonical = {fold(NICKNAMES.get(t, t), german=True) for t in tokens | {german}}
    return NameForms(
        german, frozenset(forms), frozenset(tokens), frozenset(canonical), phonetic(german)
    )


@lru_cache(maxsize=1 << 16)
def phonetic(folded: str) -> str:
    """Metaphone of the first token of a folded name ('' when there is none)."""
    first = folded.split(" ", 1)[0] if folded else ""
    return jellyfish.metaphone(first) if first else ""


_STREET_SUFFIX = re.compile(r"(str|strasse)$")
_NOT_STREET = re.compile(r"[^a-z0-9]")


@lru_cache(maxsize=1 << 16)
def street_key(value: str) -> str:
    """'Hauptstr.' / 'Hauptstraße' / 'HAUPTSTRASSE' → 'hauptstrasse'."""
    text = value.casefold().translate(_GERMAN).translate(_SPECIAL)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _STREET_SUFFIX.sub("strasse", _NOT_STREET.sub("", text))


def house_key(value: str) -> str:
    return re.sub(r"\s+", "", value).casefold()


def digits(value: str) -> str:
    return re.sub(r"\D", "", value)
