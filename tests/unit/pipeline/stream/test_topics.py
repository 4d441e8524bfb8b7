from pipeline.stream.topics import ALL_TOPICS, DEAD_LETTERS, MEMBERSHIPS, PROFILES, topic_names


def test_every_topic_has_a_distinct_name_and_a_doc() -> None:
    names = [spec.name("p.") for spec in ALL_TOPICS]
    assert len(set(names)) == len(names)
    assert all(name.startswith("p.") for name in names)
    assert all(spec.doc for spec in ALL_TOPICS)


def test_the_latest_state_topics_are_compacted_and_others_are_not() -> None:
    compacted = (PROFILES, MEMBERSHIPS)  # the latest profile / audiences per customer
    assert all(spec.config["cleanup.policy"] == "compact" for spec in compacted)
    others = [spec for spec in ALL_TOPICS if spec not in compacted]
    assert all(spec.config.get("cleanup.policy", "delete") == "delete" for spec in others)


def test_partitioned_topics_follow_the_setting_and_dead_letters_stay_single() -> None:
    assert PROFILES.partitions(8) == 8
    assert DEAD_LETTERS.partitions(8) == 1


def test_topic_names_maps_suffix_to_full_name() -> None:
    assert topic_names("x.")["profiles.v1"] == "x.profiles.v1"
