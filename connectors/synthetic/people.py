"""Synthetic people for the generator: German and international names, addresses, contacts.

Names carry their real-world variants: nicknames (Katharina → Kathi), transliterations
(Jürgen → Juergen / Jurgen, Weiß → Weiss), double names (Anna-Lena, Müller-Lüdenscheidt) and
typing mistakes. Everything is drawn from a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

# (given name, nicknames)
FIRST_NAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Jürgen", ("Jürgen",)),
    ("Katharina", ("Kathi", "Katja")),
    ("Alexander", ("Alex",)),
    ("Elisabeth", ("Lisa", "Elli")),
    ("Maximilian", ("Max",)),
    ("Anna-Lena", ("Anna", "Lena")),
    ("Karl-Heinz", ("Kalle",)),
    ("Hans-Peter", ("Hansi",)),
    ("Marie-Luise", ("Malu",)),
    ("Sören", ("Sören",)),
    ("Jörg", ("Jörg",)),
    ("Björn", ("Björn",)),
    ("Bärbel", ("Bärbel",)),
    ("Günther", ("Günni",)),
    ("Ursula", ("Uschi", "Ulla")),
    ("Wolfgang", ("Wolf",)),
    ("Christina", ("Tina", "Chris")),
    ("Johannes", ("Hannes", "Jo")),
    ("Stefanie", ("Steffi",)),
    ("Thomas", ("Tom", "Tommy")),
    ("Zoë", ("Zoe",)),
    ("Ayşe", ("Ayse",)),
    ("Mehmet", ("Memo",)),
    ("Agnieszka", ("Aga",)),
    ("Łukasz", ("Lukas",)),
    ("José", ("Pepe",)),
    ("Siobhán", ("Siobhan",)),
    ("François", ("Francois",)),
    ("Nguyễn Thị", ("Thi",)),
    ("Dmitri", ("Dima",)),
    ("Lea", ("Lea",)),
    ("Finn", ("Finn",)),
    ("Mia", ("Mia",)),
    ("Paul", ("Paul",)),
    ("Emma", ("Emmi",)),
    ("Noah", ("Noah",)),
) + tuple(
    (name, (name,))
    for name in (
        "Sabine Andrea Petra Claudia Susanne Nicole Birgit Heike Martina Anja Sandra Monika "
        "Karin Gabriele Renate Sophie Marie Hannah Laura Julia Sarah Lisa-Marie Johanna Clara "
        "Greta Frieda Ida Luisa Charlotte Amelie Lina Leonie Emilia Jana Tanja Silke Kerstin "
        "Michael Andreas Stefan Christian Markus Frank Peter Klaus Jens Sven Tobias Florian "
        "Lukas Jonas Leon Felix Elias Ben Luca Moritz David Julian Simon Niklas Tim Jan Daniel "
        "Sebastian Dennis Patrick Matthias Dirk Uwe Ralf Rainer Holger Bernd Helmut Manfred "
        "Dieter Horst Gerhard Werner Heinz Emre Can Deniz Elif Fatma Zeynep Ahmet Ali Kemal "
        "Piotr Tomasz Katarzyna Marek Ivan Olga Natalia Sergej Giulia Marco Luca Chiara Ana "
        "Lucía Carmen Pablo Liam Olivia Noah Ava Aoife Seán Niamh Mohammed Fatima Omar Layla"
    ).split()
)
LAST_NAMES: tuple[str, ...] = (
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weiß",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hartmann",
    "Lange",
    "Werner",
    "Krause",
    "Meier",
    "Lehmann",
    "Groß",
    "Öztürk",
    "Y\u0131lmaz",
    "Kowalski",
    "Nowak",
    "Nguyen",
    "Rossi",
    "García",
    "O'Brien",
    "Papadopoulos",
    "Müller-Lüdenscheidt",
    "Schmidt-Ohlsen",
    "von Bülow",
    "Meyer-Landrut",
    "Dąbrowski",
    "Jürgensen",
    "Häußler",
    "Fußmann",
) + tuple(
    (
        "Schmitz Krämer Schuster Böhm Frank Albrecht Schumacher Winkler Simon Ludwig Jäger "
        "Lorenz Baumann Heinrich Franke Kuhn Pohl Busch Roth Engel Horn Sommer Vogel Bergmann "
        "Seidel Brandt Haas Schreiber Graf Dietrich Kraus Günther Ziegler Schulte Kühn Peters "
        "Berger Friedrich Walter Möller Keller Fuchs Huber Kaiser Herrmann Arnold Voigt Stein "
        "Jung Hahn Thomas Martin Schubert Weber Wolff Schütz Maier Beck Lang Ernst Paul Otto "
        "Vogt Kurz Haase Barth Nagel Marx Fiedler Sauer Thiel Ebert Kolb Kretschmer Pfeiffer "
        "Hesse Kraft Wendt Schramm Beyer Böttcher Menzel Lindner Brinkmann Ritter Hofmann "
        "Kaya Demir Şahin Çelik Arslan Doğan Kılıç Aydın Wiśniewski Wójcik Kamiński Lewandowski "
        "Zieliński Petrović Jovanović Novak Horvat Ferrari Romano Colombo Bianchi Fernández "
        "López Martínez Sánchez Pérez Silva Santos Costa Murphy Kelly Walsh Smith Johnson "
        "Tran Le Pham Kim Park Chen Wang Li Zhang Ivanov Petrov Smirnov Kuznetsov Popescu "
        "Nagy Kovács Andersen Nielsen Hansen Johansson Virtanen Dubois Lefèvre Moreau Janssen "
        "Bakker Müller-Wohlfahrt Schulze-Delitzsch Graf-Zeppelin"
    ).split()
)
# (first postal code, how many, city): every city has many postal codes.
CITIES: tuple[tuple[int, int, str], ...] = (
    (10115, 200, "Berlin"),
    (20095, 150, "Hamburg"),
    (80331, 160, "München"),
    (50667, 100, "Köln"),
    (60311, 80, "Frankfurt am Main"),
    (70173, 60, "Stuttgart"),
    (40210, 40, "Düsseldorf"),
    (4103, 60, "Leipzig"),
    (28195, 40, "Bremen"),
    (1067, 60, "Dresden"),
    (90402, 60, "Nürnberg"),
    (30159, 40, "Hannover"),
    (48143, 30, "Münster"),
    (44135, 40, "Dortmund"),
    (45127, 40, "Essen"),
    (53111, 20, "Bonn"),
    (68159, 20, "Mannheim"),
    (76131, 30, "Karlsruhe"),
    (65183, 20, "Wiesbaden"),
    (24103, 20, "Kiel"),
    (18055, 10, "Rostock"),
    (99084, 20, "Erfurt"),
    (86150, 20, "Augsburg"),
    (93047, 10, "Regensburg"),
)
STREETS: tuple[str, ...] = (
    "Hauptstraße",
    "Bahnhofstraße",
    "Schloßallee",
    "Gartenweg",
    "Lindenstraße",
    "Goethestraße",
    "Schillerstraße",
    "Am Mühlbach",
    "Königsallee",
    "Friedrichstraße",
    "Straße des 17. Juni",
    "Große Bleichen",
    "Fußgängerzone",
    "Kirchplatz",
    "Mozartstraße",
    "Beethovenstraße",
    "Ringstraße",
    "Poststraße",
    "Marktplatz",
    "Wilhelmstraße",
    "Kaiserstraße",
    "Rosenweg",
    "Birkenweg",
    "Ahornweg",
    "Tulpenweg",
    "Mühlenstraße",
    "Waldstraße",
    "Bergstraße",
    "Feldstraße",
    "Sonnenallee",
    "Parkstraße",
    "Karl-Marx-Straße",
    "Lessingstraße",
    "Uhlandstraße",
    "Heinrich-Heine-Allee",
    "Am Sportplatz",
    "Im Winkel",
    "Zur Alten Mühle",
    "Dorfstraße",
    "Talstraße",
    "Blumenstraße",
    "Breite Straße",
    "Lange Reihe",
    "Kastanienallee",
)
DOMAINS = ("gmx.de", "web.de", "t-online.de", "gmail.com", "posteo.de", "outlook.com", "icloud.com")
MOBILE_PREFIXES = ("151", "152", "157", "160", "162", "170", "171", "172", "175", "176", "177")


def ascii_fold(value: str, german: bool = True) -> str:
    """Jürgen → Juergen (german) or Jurgen; Weiß → Weiss; Łukasz → Lukasz."""
    if german:
        for umlaut, spelled in (
            ("ä", "ae"),
            ("ö", "oe"),
            ("ü", "ue"),
            ("Ä", "Ae"),
            ("Ö", "Oe"),
            ("Ü", "Ue"),
        ):
            value = value.replace(umlaut, spelled)
    value = value.replace("ß", "ss").replace("ł", "l").replace("Ł", "L").replace("\u0131", "i")
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def typo(rnd: random.Random, value: str) -> str:
    """One typing mistake: a swapped, dropped or doubled letter."""
    if len(value) < 4:
        return value
    i = rnd.randrange(1, len(value) - 2)
    kind = rnd.randrange(3)
    if kind == 0:
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    if kind == 1:
        return value[:i] + value[i + 1 :]
    return value[:i] + value[i] + value[i:]


def phone_forms(national: str) -> tuple[str, ...]:
    """Surface forms of one German mobile number ('1701234567')."""
    prefix, rest = national[:3], national[3:]
    return (
        f"+49 {prefix} {rest}",
        f"0{prefix}/{rest}",
        f"(0{prefix}) {rest}",
        f"0049 {prefix} {rest}",
        f"0{prefix}{rest}",
        f"+49{prefix}{rest}",
    )


@dataclass(frozen=True)
class Address:
    street: str
    house_number: str
    postal_code: str
    city: str

    def street_variant(self, rnd: random.Random) -> str:
        street = self.street
        if street.endswith("straße") and rnd.random() < 0.4:
            street = street[: -len("straße")] + rnd.choice(("str.", "strasse"))
        return street


@dataclass
class Person:
    pid: int
    first_name: str
    nicknames: tuple[str, ...]
    last_name: str
    birth_date: str
    email: str
    second_email: str | None
    phone: str  # national significant number, e.g. '1701234567'
    address: Address
    moved_to: Address | None
    customer_id: str | None
    loyalty_id: str | None
    devices: list[str] = field(default_factory=list)
    anonymous_ids: list[str] = field(default_factory=list)
    messenger_psid: str | None = None
    shared_device: str | None = None  # a family tablet also used by another person
    loyalty_in_crm: bool = True  # False: the card signed up on paper never reached the CRM

    def name_variant(self, rnd: random.Random, corruption: float = 1.0) -> tuple[str, str]:
        """How one channel spells the name: mostly right, else folded, nicknamed or mistyped
        (``corruption`` scales how often: 0 never, 1 the default rates, 2 twice as often)."""
        first, last = self.first_name, self.last_name
        roll = rnd.random() / max(corruption, 1e-9)
        if roll < 0.10:
            first = rnd.choice(self.nicknames)
        elif roll < 0.20:
            first, last = ascii_fold(first, german=rnd.random() < 0.6), ascii_fold(last)
        elif roll < 0.26:
            last = typo(rnd, last)
        elif roll < 0.30:
            first = typo(rnd, first)
        elif roll < 0.33:
            first = first.upper()
            last = last.upper()
        return first, last


def place(rnd: random.Random) -> tuple[str, str]:
    """A postal code and its city, big cities more often."""
    first, count, city = rnd.choices(CITIES, weights=[c[1] for c in CITIES])[0]
    return f"{first + rnd.randrange(count):05d}", city


def zipf(rnd: random.Random, values: tuple[Any, ...]) -> Any:
    """Common names are common: the n-th value is drawn with weight 1 / (n + 10)."""
    return rnd.choices(values, weights=_weights(len(values)))[0]


@lru_cache(maxsize=8)
def _weights(n: int) -> list[float]:
    return [1 / (rank + 10) for rank in range(n)]


def make_person(rnd: random.Random, pid: int, used: set[str], namespace: str = "") -> Person:
    """``namespace`` keeps CRM ids of different generated populations apart."""
    first, nicknames = zipf(rnd, FIRST_NAMES)
    last = zipf(rnd, LAST_NAMES)
    year = rnd.randint(1950, 2006)
    birth = f"{year}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
    local_first = ascii_fold(first).lower().replace(" ", "").replace("'", "")
    local_last = ascii_fold(last).lower().replace(" ", "").replace("'", "")
    email = ""
    while not email or email in used:
        style = rnd.randrange(3)
        local = (
            f"{local_first}.{local_last}"
            if style == 0
            else f"{local_first[0]}{local_last}{rnd.randint(1, 99)}"
            if style == 1
            else f"{local_first}{year % 100:02d}"
        )
        email = f"{local}@{rnd.choice(DOMAINS)}"
        if email in used:
            email = f"{local}{pid}@{rnd.choice(DOMAINS)}"
    used.add(email)
    phone = ""
    while not phone or phone in used:
        phone = rnd.choice(MOBILE_PREFIXES) + str(rnd.randint(1_000_000, 99_999_999))
    used.add(phone)
    postal, city = place(rnd)
    address = Address(
        rnd.choice(STREETS),
        f"{rnd.randint(1, 180)}{rnd.choice(['', '', '', 'a', 'b'])}",
        postal,
        city,
    )
    moved = None
    if rnd.random() < 0.1:
        postal2, city2 = place(rnd)
        moved = Address(rnd.choice(STREETS), str(rnd.randint(1, 120)), postal2, city2)
    second = (
        f"{local_first}.{local_last}.{pid}@firma-{rnd.randint(1, 40)}.de"
        if rnd.random() < 0.2
        else None
    )
    return Person(
        pid=pid,
        first_name=first,
        nicknames=nicknames,
        last_name=last,
        birth_date=birth,
        email=email,
        second_email=second,
        phone=phone,
        address=address,
        moved_to=moved,
        customer_id=f"CRM-{namespace}{pid:07d}" if rnd.random() < 0.75 else None,
        loyalty_id=f"LC-{rnd.randint(10**9, 10**10 - 1)}" if rnd.random() < 0.6 else None,
        loyalty_in_crm=rnd.random() < 0.5,
        devices=[f"dev-{rnd.getrandbits(64):016x}" for _ in range(rnd.choice([1, 1, 2, 3]))],
        anonymous_ids=[f"{rnd.getrandbits(128):032x}" for _ in range(rnd.choice([1, 2, 3, 5]))],
        messenger_psid=str(rnd.randint(10**15, 10**16 - 1)) if rnd.random() < 0.15 else None,
    )
