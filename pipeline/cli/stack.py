"""`omnistitch stack|topics|schemas|tail`: the local Kafka + registry, topic definitions,
schemas, and reading a topic decoded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.console import say, setup_logging
from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings
from pipeline.stack.local import KAFKA_VERSION, REGISTRY_VERSION, LocalStack, StackConfig
from pipeline.stream.topics import ALL_TOPICS, create_topics


def stack_config(settings: Settings) -> StackConfig:
    return StackConfig(
        home=settings.stack_dir,
        lib_dir=settings.stack_lib_dir,
        kafka_port=settings.kafka_port,
        controller_port=settings.controller_port,
        registry_port=settings.registry_port,
        vault_port=settings.vault_port,
        kafka_heap=settings.kafka_heap,
        registry_heap=settings.registry_heap,
        ready_timeout_s=settings.ready_timeout_s,
    )


def _secure_config(settings: Settings) -> tuple[StackConfig, Path]:
    """The stack with a SASL_SSL listener; its SCRAM user's password is made once and kept
    (with the other client settings) in <stack dir>/secure.env, readable by its owner only."""
    import dataclasses
    import secrets

    env_file = settings.stack_dir / "secure.env"
    found = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            found[name] = value
    password = found.get("OMNISTITCH_KAFKA_SASL_PASSWORD") or secrets.token_urlsafe(24)
    config = dataclasses.replace(
        stack_config(settings),
        secure_port=settings.secure_port,
        secure_users=(("omnistitch", password),),
    )
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    ca = settings.stack_dir / "kafka" / "tls" / "ca.pem"
    env_file.write_text(
        "\n".join(
            [
                f"OMNISTITCH_BOOTSTRAP_SERVERS={config.secure_bootstrap_servers}",
                "OMNISTITCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
                "OMNISTITCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
                "OMNISTITCH_KAFKA_SASL_USERNAME=omnistitch",
                f"OMNISTITCH_KAFKA_SASL_PASSWORD={password}",
                f"OMNISTITCH_KAFKA_SSL_CA_FILE={ca.resolve()}",
                "",
            ]
        )
    )
    env_file.chmod(0o600)
    return config, env_file


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    secure_env = None
    if getattr(args, "secure", False):
        config, secure_env = _secure_config(settings)
        stack = LocalStack(config)
    else:
        stack = LocalStack(stack_config(settings))
    if args.action == "up":
        elapsed = stack.up(report=say)
        result = create_topics(
            settings.bootstrap_servers,
            settings.topic_prefix,
            settings.partitions,
            settings.replication_factor,
        )
        for name, state in result.items():
            say(f"topic {name}: {state}")
        from pipeline.stream.serialization import RegistrySerde

        registered = RegistrySerde(stack.config.registry_url).register(settings.topic_prefix)
        say(f"schemas registered: {len(registered)} subjects (BACKWARD)")
        say(
            f"stack up in {elapsed:.1f}s: Kafka {KAFKA_VERSION} on {settings.bootstrap_servers}, "
            f"Apicurio Registry {REGISTRY_VERSION} on {stack.config.registry_url}"
        )
        if secure_env is not None:
            say(f"SASL_SSL client settings (secrets, owner-only): set -a; . {secure_env}")
    elif args.action == "down":
        stack.down(report=say)
    elif args.action == "status":
        running = 0
        for status in stack.status():
            state = "ready" if status.ready else ("starting" if status.pids else "stopped")
            pids = ",".join(map(str, status.pids)) or "-"
            say(f"{status.name:<9} {state:<9} pid={pids:<8} {status.endpoint}")
            running += bool(status.pids)
        if stack.kafka.ready():
            from confluent_kafka.admin import AdminClient

            admin = AdminClient(settings.kafka_security().librdkafka())
            topics = admin.list_topics(timeout=5).topics
            for spec in ALL_TOPICS:
                name = spec.name(settings.topic_prefix)
                parts = len(topics[name].partitions) if name in topics else 0
                say(f"topic {name:<40} {'partitions=' + str(parts) if parts else 'missing'}")
        return 0 if running == len(stack.nodes) or args.allow_stopped else 3
    elif args.action == "logs":
        for node in stack.nodes:
            say(f"==> {node.log_file} <==")
            say(node.tail(args.lines))
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "create":
        result = create_topics(
            settings.kafka_security(),
            settings.topic_prefix,
            settings.partitions,
            settings.replication_factor,
            dead_letter_retention_ms=int(settings.dead_letter_retention_days * 86_400_000),
        )
        for name, state in result.items():
            say(f"topic {name}: {state}")
    elif args.action == "purge-dead-letters":
        from datetime import datetime

        from pipeline.stream.topics import DEAD_LETTERS, purge_before

        before = datetime.fromisoformat(args.before) if args.before else None
        topic = DEAD_LETTERS.name(settings.topic_prefix)
        cut = int(before.timestamp() * 1000) if before else None
        deleted = purge_before(settings.kafka_security(), topic, cut)
        say(f"{topic}: {sum(deleted.values())} dead letters deleted")
    else:
        for spec in ALL_TOPICS:
            parts = spec.partitions(settings.partitions)
            policy = spec.config.get("cleanup.policy", "delete")
            say(
                f"{spec.name(settings.topic_prefix):<40} partitions={parts:<3} "
                f"cleanup.policy={policy:<8} key={spec.key:<12} {spec.doc}"
            )
    return 0


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.contract import schemas

    if args.action == "check":
        problems = schemas.backward_problems()
        released = sorted(p.name for p in schemas.released_dir().glob("*.avsc"))
        for name, found in problems.items():
            for problem in found:
                print(f"INCOMPATIBLE {name}: {problem}", file=sys.stderr)
        if problems:
            print(
                f"{len(problems)} schema(s) not BACKWARD compatible with their released version; "
                "add defaults / make new fields optional, or release a new major version",
                file=sys.stderr,
            )
            return 1
        say(f"{len(released)} released schema(s) checked: all BACKWARD compatible")
    elif args.action == "release":
        for path in schemas.release():
            say(f"released {path}")
    else:
        from pipeline.stream.serialization import RegistrySerde

        access = settings.registry_access()
        registered = RegistrySerde.from_access(access).register(settings.topic_prefix)
        for subject, schema_id in registered.items():
            say(f"subject {subject}: schema id {schema_id} (BACKWARD)")
    return 0


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    """Print a topic's messages as JSON lines: Avro values decoded with the schema they were
    written with (from the registry), tombstones as null, anything else by its size only."""
    import base64
    import json

    from connectors.files.loader import TopicProbe
    from pipeline.exceptions import DecodeError
    from pipeline.stream.serialization import RegistrySerde
    from pipeline.vault.client import VaultClient
    from pipeline.vault.sealer import opened

    probe = TopicProbe(settings.kafka_security())
    serde = RegistrySerde.from_access(settings.registry_access())
    try:
        ends = probe.ends(args.topic)
        if not ends:
            say(f"topic {args.topic}: not found or empty")
            return 2
        since = {p: max(0, end - args.last) for p, end in ends.items()} if args.last else {}
        messages = probe.arrived(args.topic, since)
    finally:
        probe.close()
    vault = VaultClient.from_settings(settings)  # sealed records are shown opened, if it can
    for message in sorted(messages, key=lambda m: (m.timestamp()[1], m.partition(), m.offset())):
        raw = message.value()
        value: object
        if raw is None:
            value = None
        else:
            try:
                value = serde.decode_as_written(raw)
                if vault is not None and isinstance(value, dict):
                    value = opened(value, vault)
            except DecodeError as exc:
                value = {"undecoded_bytes": len(raw), "why": exc.rejection.reason.value}
        key = message.key()
        record = {
            "partition": message.partition(),
            "offset": message.offset(),
            "key": key.decode("utf-8", "replace") if key is not None else None,
            "headers": {
                k: base64.b64encode(v).decode() if v is not None else None
                for k, v in (message.headers() or [])
            }
            if args.headers
            else None,
            "value": value,
        }
        print(json.dumps(record, default=_shown, ensure_ascii=False))
    return 0


def _shown(value: object) -> str:
    """JSON for what JSON lacks: bytes (a sealed field) as base64, the rest as text."""
    import base64

    return base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)


def cmd_vault(args: argparse.Namespace, settings: Settings) -> int:
    """``omnistitch vault``: the key vault service in the foreground (the stack starts one)."""
    from pathlib import Path

    from pipeline.vault.service import serve
    from pipeline.vault.store import rocks_store

    setup_logging(settings)
    token = settings.vault_token_value()
    if not token:
        raise ConfigurationError("no vault token: set OMNISTITCH_VAULT_TOKEN")
    data = Path(args.data) if args.data else settings.stack_dir / "vault" / "keys"
    serve(rocks_store(data), token, args.host, args.port or settings.vault_port)
    return 0
