"""``omnistitch export``: an audience's current members as a file for an ad platform — e-mail
addresses and phone numbers normalised and SHA-256 hashed the way the platform asks
(pipeline.activation.destinations), nothing else. Read from the compacted memberships and
profiles topics (sealed profiles opened with the vault; a customer whose key is gone is left
out)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pipeline.activation.destinations import PLATFORMS, hashed_email, hashed_phone
from pipeline.contract.models import AudienceMembership, CustomerProfile
from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings
from pipeline.stream.readback import latest_per_key
from pipeline.stream.serialization import Serde
from pipeline.stream.topics import MEMBERSHIPS, PROFILES
from pipeline.vault.client import Vault
from pipeline.vault.sealer import readable

HEADERS = {"google": ("Email", "Phone"), "meta": ("email", "phone")}


def rows(profile: dict[str, Any], platform: str) -> list[tuple[str, str]]:
    """(hashed e-mail, hashed phone) rows of one customer: every address and number, paired
    in order, the shorter list padded with empty cells."""
    ids = profile.get("identifiers") or {}
    emails = [hashed_email(e, platform) for e in ids.get("email", [])]
    phones = [hashed_phone(p, platform) for p in ids.get("phone", [])]
    count = max(len(emails), len(phones))
    return [
        (emails[i] if i < len(emails) else "", phones[i] if i < len(phones) else "")
        for i in range(count)
    ]


def export(
    settings: Settings,
    serde: Serde,
    vault: Vault | None,
    audience: str,
    platform: str,
    output: Path,
) -> tuple[int, int]:
    """Write the file; returns (customers exported, rows)."""
    if platform not in PLATFORMS:
        raise ConfigurationError(f"platform must be one of {', '.join(PLATFORMS)}")
    memberships_topic = MEMBERSHIPS.name(settings.topic_prefix)
    members = set()
    for key, value in latest_per_key(settings, memberships_topic).items():
        if value is None:
            continue
        record = serde.decode(memberships_topic, value, AudienceMembership)
        if audience in record["audiences"]:
            members.add(key)
    profiles_topic = PROFILES.name(settings.topic_prefix)
    customers, written = 0, 0
    tmp = output.with_suffix(output.suffix + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as out:
        tmp.chmod(0o600)  # hashed identifiers are still personal data
        writer = csv.writer(out)
        writer.writerow(HEADERS[platform])
        for key, value in latest_per_key(settings, profiles_topic).items():
            if key not in members or value is None:
                continue
            profile = readable(serde.decode(profiles_topic, value, CustomerProfile), vault)
            if profile is None:
                continue  # its key is gone (erased or superseded), or no vault
            found = rows(profile, platform)
            if found:
                customers += 1
                written += len(found)
                writer.writerows(found)
    tmp.replace(output)
    return customers, written
