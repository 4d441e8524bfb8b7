"""Agreement: the predicates that decide whether two normalised values fall in a comparison level
(pure). A level names its predicate and parameters in the model's JSON; the predicate sees one
value of each record and the level's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler, Levenshtein

from pipeline.engine.features import address_parts
from pipeline.engine.names import name_forms


def _names_exact(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    fa, fb = name_forms(a), name_forms(b)
    return bool(fa and fb and fa.forms & fb.forms)


def _names_nickname(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    fa, fb = name_forms(a), name_forms(b)
    return bool(fa and fb and fa.canonical & fb.canonical)


def _names_token(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    fa, fb = name_forms(a), name_forms(b)
    return bool(fa and fb and (fa.tokens & fb.tokens))


@lru_cache(maxsize=1 << 16)
def _jw(a: str, b: str) -> float:
    fa, fb = name_forms(a), name_forms(b)
    if not fa or not fb:
        return float(JaroWinkler.similarity(a.casefold(), b.casefold()))
    return float(
        max(JaroWinkler.similarity(x, y) for x in fa.forms for y in fb.forms if " " not in x + y)
        if any(" " not in x for x in fa.forms) and any(" " not in y for y in fb.forms)
        else JaroWinkler.similarity(fa.full, fb.full)
    )


def _jaro_winkler(a: str, b: str, p: Mapping[str, Any]) -> bool:
    return _jw(a, b) >= float(p["threshold"])


def _exact(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    return a == b


def _date_swap(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    return a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]


def _levenshtein(a: str, b: str, p: Mapping[str, Any]) -> bool:
    return int(Levenshtein.distance(a, b)) <= int(p["distance"])


def _prefix(a: str, b: str, p: Mapping[str, Any]) -> bool:
    n = int(p["length"])
    return len(a) >= n and a[:n] == b[:n]


def _email_local(a: str, b: str, p: Mapping[str, Any]) -> bool:
    la, lb = a.split("@", 1)[0], b.split("@", 1)[0]
    return int(Levenshtein.distance(la, lb)) <= int(p.get("distance", 1))


def _suffix(a: str, b: str, p: Mapping[str, Any]) -> bool:
    n = int(p["length"])
    return len(a) >= n and a[-n:] == b[-n:]


def _similar(a: str, b: str, threshold: float) -> bool:
    return bool(a and b) and float(JaroWinkler.similarity(a, b)) >= threshold


def _postal_typo(a: str, b: str) -> bool:
    """One digit mistyped or two neighbours swapped in codes of the same length."""
    return bool(a and b) and len(a) == len(b) and int(DamerauLevenshtein.distance(a, b)) <= 1


SAME_ADDRESS, ADDRESS_TYPOS, SAME_STREET, SAME_PLACE_NO_STREET = 7, 6, 5, 4
SAME_POSTAL_AND_CITY, SAME_POSTAL_OR_CITY, SAME_REGION, NO_AGREEMENT = 3, 2, 1, 0


@lru_cache(maxsize=1 << 16)
def address_grade(a: str, b: str) -> int:
    """Which single case of agreement two composite addresses are in (one number per case).

    7 same street, house number and postal code or city; 6 the same with typing mistakes (a
    similar street, or street and second line swapped; a mistyped postal code or city);
    5 the same street in the same place, house number differing or missing; 4 one side names
    no street and the place parts both sides have agree (nothing more to compare); 3 streets
    differ in the same postal code and city; 2 the same postal code or city; 1 the same region;
    0 nothing, or different countries.
    """
    x, y = address_parts(a), address_parts(b)
    if x["country"] and y["country"] and x["country"] != y["country"]:
        return NO_AGREEMENT
    postal = bool(x["postal_code"]) and x["postal_code"] == y["postal_code"]
    city = bool(x["city"]) and x["city"] == y["city"]
    near_postal = postal or _postal_typo(x["postal_code"], y["postal_code"])
    near_city = city or _similar(x["city"], y["city"], 0.9)
    house = bool(x["house"]) and x["house"] == y["house"]
    street = bool(x["street"]) and x["street"] == y["street"]
    if street and house and (postal or city):
        return SAME_ADDRESS
    # Address lines typed into each other's field count as the same street.
    similar_street = (
        street
        or _similar(x["street"], y["street"], 0.88)
        or _similar(x["street"], y["line2"], 0.88)
        or _similar(x["line2"], y["street"], 0.88)
    )
    if similar_street and house and (near_postal or near_city):
        return ADDRESS_TYPOS
    if similar_street and (near_postal or near_city):
        return SAME_STREET
    if not (x["street"] and y["street"]) and (postal or city):
        both_postal = bool(x["postal_code"] and y["postal_code"])
        both_city = bool(x["city"] and y["city"])
        if (postal or not both_postal) and (near_city or not both_city):
            return SAME_PLACE_NO_STREET
    if postal and near_city:
        return SAME_POSTAL_AND_CITY
    if postal or city or (near_postal and near_city):
        return SAME_POSTAL_OR_CITY
    if x["region"] and x["region"] == y["region"]:
        return SAME_REGION
    return NO_AGREEMENT


def _address(a: str, b: str, p: Mapping[str, Any]) -> bool:
    return address_grade(a, b) == int(p["grade"])


def _always(_a: str, _b: str, _p: Mapping[str, Any]) -> bool:
    return True


PREDICATES: dict[str, Callable[[str, str, Mapping[str, Any]], bool]] = {
    "names_exact": _names_exact,
    "names_nickname": _names_nickname,
    "names_token": _names_token,
    "jaro_winkler": _jaro_winkler,
    "exact": _exact,
    "date_swap": _date_swap,
    "levenshtein": _levenshtein,
    "prefix": _prefix,
    "email_local": _email_local,
    "suffix": _suffix,
    "address": _address,
    "else": _always,
}
