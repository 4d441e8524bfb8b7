"""Fellegi-Sunter comparisons, levels and weights; name normalisation; the model as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.contract.models import Traits
from pipeline.engine.comparisons import Model, probability
from pipeline.engine.features import features_of, merge_features
from pipeline.engine.identifiers import Node
from pipeline.engine.names import name_forms
from pipeline.engine.weights import default_model
from pipeline.exceptions import ConfigurationError

MODEL = default_model()


def level(comparison: str, left: str, right: str) -> str:
    found = next(c for c in MODEL.comparisons if c.output_column_name == comparison)
    index = found.level([left], [right])
    return "null" if index is None else found.levels[index].label


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("Jürgen", "Juergen", "exact"),
        ("Jürgen", "Jurgen", "exact"),
        ("JÜRGEN", "jürgen", "exact"),
        ("José", "Jose", "exact"),
        ("Anna-Lena", "Anna Lena", "exact"),
        ("Katharina", "Kathi", "nickname"),
        ("Thomas", "Tom", "nickname"),
        ("Juergen", "Jurgen", "exact"),
        ("Stefanie", "Stefnie", "jaro_winkler >= 0.92"),
        ("Sabine", "Sabrina", "jaro_winkler >= 0.80"),
        ("Jürgen", "Ursula", "else"),
    ],
)
def test_first_name_levels(left: str, right: str, expected: str) -> None:
    assert level("first_name", left, right) == expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("Müller", "MUELLER", "exact"),
        ("Weiß", "Weiss", "exact"),
        ("Müller-Lüdenscheidt", "Müller", "double name part"),
        ("Schmidt", "Schmdit", "jaro_winkler >= 0.92"),
        ("Müller", "Schmidt", "else"),
    ],
)
def test_last_name_levels(left: str, right: str, expected: str) -> None:
    assert level("last_name", left, right) == expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1984-02-29", "1984-02-29", "exact"),
        ("1984-03-04", "1984-04-03", "day and month swapped"),
        ("1984-03-04", "1984-03-05", "one digit off"),
        ("1984-03-04", "1984-11-20", "same year"),
        ("1984-03-04", "1971-11-20", "else"),
    ],
)
def test_birth_date_levels(left: str, right: str, expected: str) -> None:
    assert level("birth_date", left, right) == expected


def address(street: str, house: str, postal: str, city: str, line2: str = "") -> str:
    traits = Traits(
        street=street, house_number=house, postal_code=postal, city=city, address_line2=line2
    )
    found = features_of(traits, [])
    return found["address"][0]


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (
            address("Hauptstr.", "12a", "10115", "Berlin"),
            address("Hauptstraße", "12 A", "10115", "Berlin"),
            "same address",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("Hauptstrase", "12", "10151", "Berlin"),
            "same address, typing mistakes",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin", line2="Hinterhaus"),
            address("Hinterhaus", "12", "10115", "Berlin", line2="Hauptstrasse"),
            "same address, typing mistakes",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("Hauptstrasse", "14", "10115", "Berlin"),
            "same street",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("Gartenweg", "3", "10115", "Berlin"),
            "other street, same postal code and city",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("Gartenweg", "3", "10117", "Berlin"),
            "same postal code or city",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("", "", "10115", "Berlin"),
            "same place, no street to compare",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("", "", "", "Berlin"),
            "same place, no street to compare",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("", "", "10117", "Berlin"),
            "same postal code or city",
        ),
        (
            address("Hauptstrasse", "12", "10115", "Berlin"),
            address("Gartenweg", "3", "80331", "München"),
            "else",
        ),
    ],
)
def test_address_levels(left: str, right: str, expected: str) -> None:
    assert level("address", left, right) == expected


def test_another_country_is_never_the_same_address() -> None:
    at = Traits(street="Hauptstrasse", house_number="1", postal_code="1010", city="Wien")
    here = features_of(at.model_copy(update={"country": "AT"}), [])["address"]
    there = features_of(at.model_copy(update={"country": "DE"}), [])["address"]
    assert level("address", here[0], there[0]) == "else"


def test_email_and_phone_levels() -> None:
    assert level("email", "zoe.obrien@gmx.de", "zoe.obrien@web.de") == "same local part (±1)"
    assert level("phone", "+491701234567", "+431701234567") == "same last 7 digits"


def test_a_missing_value_is_the_null_level_with_no_weight() -> None:
    score = MODEL.score({"first_name": ["Zoë"]}, {"last_name": ["Müller"]})
    assert score.levels["first_name"] == ("null", 0.0)
    assert score.match_weight == pytest.approx(MODEL.prior_weight)


def test_weights_are_log2_m_over_u_and_add_up_with_the_prior() -> None:
    left = {"first_name": ["Jürgen"], "last_name": ["Müller"], "birth_date": ["1980-02-03"]}
    right = {"first_name": ["Juergen"], "last_name": ["Mueller"], "birth_date": ["1980-02-03"]}
    score = MODEL.score(left, right)
    exact = [c.levels[0] for c in MODEL.comparisons[:3]]
    for lvl in exact:
        assert lvl.match_weight == pytest.approx(math.log2(lvl.m_probability / lvl.u_probability))
    expected = MODEL.prior_weight + sum(lvl.match_weight for lvl in exact)
    assert score.match_weight == pytest.approx(expected)
    assert score.match_probability == pytest.approx(probability(expected))
    assert score.match_probability > MODEL.thresholds.auto_link


def test_names_alone_do_not_reach_auto_link_but_names_and_birth_date_do() -> None:
    names = {"first_name": ["Thomas"], "last_name": ["Müller"]}
    assert MODEL.score(names, names).match_probability < MODEL.thresholds.auto_link
    born = {**names, "birth_date": ["1971-05-04"]}
    assert MODEL.score(born, born).match_probability >= MODEL.thresholds.auto_link


def test_agreement_weighs_more_than_disagreement_on_every_comparison() -> None:
    for comparison in MODEL.comparisons:
        weights = [lvl.match_weight for lvl in comparison.levels]
        assert weights[0] == max(weights)
        assert weights[-1] == min(weights) < 0


def test_name_forms_know_umlauts_double_names_and_nicknames() -> None:
    forms = name_forms("Müller-Lüdenscheidt")
    assert forms is not None
    assert {"mueller luedenscheidt", "muller ludenscheidt"} <= forms.forms
    assert {"mueller", "luedenscheidt"} <= forms.tokens
    kathi = name_forms("Kathi")
    assert kathi is not None and "katharina" in kathi.canonical
    assert name_forms("  ") is None


def test_features_of_an_event_and_their_bounded_merge() -> None:
    traits = Traits(
        first_name="Zoë",
        street="Hauptstr.",
        house_number="12 a",
        postal_code="D-10115",
        city="Berlin",
        birth_date="not a date",
    )
    found = features_of(traits, [Node("email", "zoe@example.ie"), Node("phone", "+491701")])
    assert found == {
        "first_name": ["Zoë"],
        "address": ["hauptstrasse|12a|10115|berlin|||"],
        "email": ["zoe@example.ie"],
        "phone": ["+491701"],
    }
    many = {"first_name": [f"n{i}" for i in range(4)]}
    assert merge_features(many, {"first_name": ["x"]}) == many


def test_the_model_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    MODEL.save(path)
    data = json.loads(path.read_text())
    assert data["comparisons"][0]["comparison_levels"][0] == {
        "label": "null",
        "is_null_level": True,
    }
    assert "match_weight" in data["comparisons"][0]["comparison_levels"][1]
    assert Model.load(path) == MODEL


@pytest.mark.parametrize(
    "broken",
    [
        {"comparisons": []},
        {"probability_two_random_records_match": 2, "comparisons": []},
        {
            "probability_two_random_records_match": 0.1,
            "comparisons": [
                {
                    "output_column_name": "x",
                    "comparison_levels": [
                        {
                            "label": "a",
                            "predicate": "psychic",
                            "m_probability": 0.5,
                            "u_probability": 0.5,
                        }
                    ],
                }
            ],
        },
        {
            "probability_two_random_records_match": 0.1,
            "comparisons": [
                {
                    "output_column_name": "x",
                    "comparison_levels": [
                        {
                            "label": "a",
                            "predicate": "exact",
                            "m_probability": 0.5,
                            "u_probability": 0.5,
                        }
                    ],
                }
            ],
        },
        {
            "probability_two_random_records_match": 0.1,
            "comparisons": [
                {
                    "output_column_name": "x",
                    "comparison_levels": [
                        {
                            "label": "a",
                            "predicate": "else",
                            "m_probability": 0,
                            "u_probability": 0.5,
                        }
                    ],
                }
            ],
        },
    ],
)
def test_a_broken_model_is_refused_with_a_clear_error(broken: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Model.from_json(broken)


def test_a_rare_name_agreeing_weighs_more_than_a_common_one_within_bounds() -> None:
    first = next(c for c in MODEL.comparisons if c.output_column_name == "first_name")
    exact = first.levels[0]
    customers = 100_000
    counts = {"Thomas": 3_000, "Wiebke": 3}

    def frequency(_attribute: str, value: str) -> tuple[int, int]:
        return counts.get(value, 0), customers

    common = MODEL.tf_weight(exact, "first_name", "Thomas", frequency)
    rare = MODEL.tf_weight(exact, "first_name", "Wiebke", frequency)
    bound = MODEL.term_frequency.max_adjustment
    assert common < exact.match_weight < rare
    assert rare == pytest.approx(exact.match_weight + bound)
    # Few customers seen: the frequency stays close to the level's u.
    early = MODEL.tf_weight(exact, "first_name", "Wiebke", lambda _a, _v: (1, 10))
    assert early == pytest.approx(exact.match_weight, abs=0.05)
    left = {"first_name": ["Wiebke"]}
    assert MODEL.score(left, left, frequency).levels["first_name"][1] == pytest.approx(rare)


def test_a_shared_surname_at_one_address_is_weak_evidence() -> None:
    at_home = {"last_name": ["Quandtmeyer"], "address": ["hauptstrasse|12|10115|berlin|||"]}
    elsewhere = {"last_name": ["Quandtmeyer"], "address": ["gartenweg|3|80331|muenchen|||"]}
    household = MODEL.score(at_home, at_home).levels["last_name"][1]
    population = MODEL.score(at_home, elsewhere).levels["last_name"][1]
    assert household < 1.5 < population


def test_a_receipt_does_not_hide_that_the_streets_both_sides_know_disagree() -> None:
    """A customer known at one street who also left a till receipt (postal code and town, no
    street) compared with a namesake in another street of the town: the streets are compared,
    not the receipt's "same place" - else the receipt joins every namesake of the town."""
    name = {"first_name": ["Wiebke"], "last_name": ["Quandtmeyer"]}
    home = "hauptstrasse|12|10115|berlin|||"
    receipt = "||10115|berlin|||"
    customer = {**name, "address": [home, receipt]}
    namesake = {**name, "address": ["gartenweg|3|10115|berlin|||"]}
    at_till = {**name, "address": [receipt]}
    assert MODEL.score(customer, namesake).levels["address"][0] == (
        "other street, same postal code and city"
    )
    assert MODEL.levels(customer, namesake) == MODEL.levels(namesake, customer)
    # Where one side knows no street at all, the place is all there is to compare.
    for other in (namesake, customer):
        assert MODEL.score(at_till, other).levels["address"][0] == (
            "same place, no street to compare"
        )


def test_reversed_names_cost_the_log_odds_of_the_mistake() -> None:
    right = {"first_name": ["Jürgen"], "last_name": ["Müller"], "birth_date": ["1980-02-03"]}
    wrong = {"first_name": ["Müller"], "last_name": ["Jürgen"], "birth_date": ["1980-02-03"]}
    straight, swapped = MODEL.score(right, right), MODEL.score(right, wrong)
    m = MODEL.reversed_names_m
    assert swapped.names_reversed and not straight.names_reversed
    assert swapped.match_weight == pytest.approx(straight.match_weight + math.log2(m / (1 - m)))
    assert MODEL.replace(reversed_names_m=0.0).score(right, wrong).match_probability < 0.01


def test_dependencies_and_term_frequency_settings_round_trip() -> None:
    data = MODEL.to_json()
    assert data["dependencies"][0]["given"] == "address"
    assert Model.from_json(data) == MODEL
    broken = {**data, "dependencies": [{**data["dependencies"][0], "u_probabilities": {"x": 2}}]}
    with pytest.raises(ConfigurationError):
        Model.from_json(broken)
    with pytest.raises(ConfigurationError):
        Model.from_json({**data, "reversed_names": {"m_probability": 1.5}})
