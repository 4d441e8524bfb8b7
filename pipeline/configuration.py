"""From the settings to the engine's typed configuration (StitchConfig, Normaliser, MatchConfig).

Kept apart from pipeline.settings so that reading settings (as the connectors do) does not
import the stitching engine.
"""

from __future__ import annotations

from pipeline.engine.comparisons import Model
from pipeline.engine.erasure import Suppression
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.journey import JOURNEY_PROPERTIES
from pipeline.engine.matching import MatchConfig
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.profile import Survivorship
from pipeline.engine.stitcher import StitchConfig
from pipeline.engine.weights import default_model
from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings
from pipeline.vault.tags import normaliser_of, suppression_of


def stitch_config(settings: Settings) -> StitchConfig:
    return StitchConfig(
        normaliser=normaliser(settings),
        rules=NamespaceRules.from_json(settings.namespace_rules, settings.hairball_max_profiles),
        survivorship=Survivorship(tuple(settings.source_precedence)),
        intake=settings.intake_policy(),
        matching=match_config(settings) if settings.probabilistic else None,
        suppression=suppression(settings),
        journey_properties=(
            JOURNEY_PROPERTIES
            if settings.journey_properties is None
            else frozenset(settings.journey_properties)
        ),
    )


def suppression(settings: Settings) -> Suppression | None:
    """The keyed hash of erased identifiers, from OMNISTITCH_ERASURE_KEY (None: unset)."""
    return suppression_of(settings)


def normaliser(settings: Settings) -> Normaliser:
    return normaliser_of(settings)


def match_config(settings: Settings) -> MatchConfig:
    model = Model.load(settings.match_model) if settings.match_model else default_model()
    model = model.with_thresholds(settings.match_auto_link, settings.match_review)
    if model.thresholds.review > model.thresholds.auto_link:
        raise ConfigurationError("match review threshold must not exceed auto-link")
    return MatchConfig(model, max_block_size=settings.match_max_block_size)
