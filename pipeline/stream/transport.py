"""How every client of the project reaches Kafka and the schema registry: TLS, SASL, registry auth.

Configured once (``OMNISTITCH_KAFKA_*`` and ``OMNISTITCH_SCHEMA_REGISTRY_*`` settings, see
pipeline.settings) and applied to each kind of client the same way:

- ``KafkaSecurity.librdkafka()``: the properties of confluent-kafka producers, consumers and the
  admin client (``security.protocol``, ``sasl.*``, ``ssl.*``);
- ``KafkaSecurity.faust()``: the ``broker_credentials`` of the faust app (aiokafka), an SSL
  context and/or SASL credentials;
- ``RegistryAccess.client_conf()``: the SchemaRegistryClient's basic auth, bearer token and CA.

A wrong password is an authentication error from the broker; ``check_kafka`` turns it into a
clear ConfigurationError within seconds instead of clients that retry for ever.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.exceptions import ConfigurationError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    bootstrap_servers: str
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = ""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigurationError(f"kafka security protocol must be one of {PROTOCOLS}")
        if self.sasl and self.sasl_mechanism not in MECHANISMS:
            raise ConfigurationError(f"kafka SASL mechanism must be one of {MECHANISMS}")
        if self.sasl and not (self.username and self.password):
            raise ConfigurationError(
                f"{self.protocol} needs OMNISTITCH_KAFKA_SASL_USERNAME and _PASSWORD"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigurationError("a client certificate needs both its cert and key file")
        for path in (self.ca_file, self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ConfigurationError(f"kafka TLS file not found: {path}")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def librdkafka(self) -> dict[str, Any]:
        """confluent-kafka properties, ``bootstrap.servers`` included."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.protocol,
            "log_level": CLIENT_LOG_LEVEL,
        }
        if self.sasl:
            conf |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.username,
                "sasl.password": self.password,
            }
        if self.tls:
            if self.ca_file:
                conf["ssl.ca.location"] = str(self.ca_file)
            if self.cert_file and self.key_file:
                conf["ssl.certificate.location"] = str(self.cert_file)
                conf["ssl.key.location"] = str(self.key_file)
        return conf

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file and self.key_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def faust(self) -> Any:
        """faust's ``broker_credentials`` (None for PLAINTEXT)."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(
                username=self.username,
                password=self.password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context() if self.tls else None,
            )
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


@dataclass(frozen=True)
class RegistryAccess:
    url: str
    username: str = ""
    password: str = ""
    token: str = ""
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.token and self.username:
            raise ConfigurationError("schema registry: give basic auth or a bearer token, not both")
        if "@" in self.url.split("://", 1)[-1].split("/", 1)[0]:
            raise ConfigurationError(
                "schema registry: put credentials in OMNISTITCH_SCHEMA_REGISTRY_USERNAME and "
                "_PASSWORD, not in the URL"
            )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ConfigurationError(f"schema registry CA file not found: {self.ca_file}")

    def client_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"url": self.url}
        if self.username:
            conf["basic.auth.user.info"] = f"{self.username}:{self.password}"
        if self.token:
            conf |= {
                "bearer.auth.credentials.source": "STATIC_TOKEN",
                "bearer.auth.token": self.token,
                "bearer.auth.logical.cluster": "-",
                "bearer.auth.identity.pool.id": "-",
            }
        if self.ca_file is not None:
            conf["ssl.ca.location"] = str(self.ca_file)
        return conf


# librdkafka logs to stderr from level 6 (informational: every connection made or lost) by
# default; warnings and errors (syslog levels 4 and below) are enough on a terminal.
CLIENT_LOG_LEVEL = 4


def kafka_conf(target: str | KafkaSecurity) -> dict[str, Any]:
    """confluent-kafka properties for a bootstrap string (plaintext) or a KafkaSecurity."""
    if isinstance(target, KafkaSecurity):
        return target.librdkafka()
    return {"bootstrap.servers": target, "log_level": CLIENT_LOG_LEVEL}


def check_kafka(security: KafkaSecurity, timeout_s: float = 10.0) -> None:
    """Fail fast with a clear error when Kafka refuses the credentials (or cannot be reached)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []

    def on_error(error: Any) -> None:
        errors.append(error.name() if hasattr(error, "name") else str(error))

    conf: dict[str, Any] = {**security.librdkafka(), "error_cb": on_error, "log_level": 0}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            admin.poll(0.1)  # serves error_cb: an authentication failure is reported there
            reason = ", ".join(sorted(set(errors))) or type(exc).__name__
            if any("AUTH" in e.upper() or "SSL" in e.upper() for e in errors):
                raise ConfigurationError(
                    f"Kafka refused the connection of {security.username or 'this client'} "
                    f"({security.protocol}, {security.sasl_mechanism}): {reason}"
                ) from exc
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"Kafka at {security.bootstrap_servers}: {reason}"
                ) from exc
