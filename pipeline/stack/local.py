"""The local stack: one Apache Kafka node (KRaft, broker + controller), Apicurio Registry and
the key vault (pipeline.vault).

Both run as plain JVMs from the jars `make setup` fetched with Maven (stack/pom.xml), bound to
127.0.0.1 only, with their data and logs under one folder (``.stack/`` by default). The same code
starts the stack for ``make up`` and for the integration tests (on free ports, in a temporary
folder). Every JVM started here carries ``-Domnistitch.stack=<folder>`` so that ``down`` can find
and stop every process of this stack even when a pid file was lost.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.exceptions import StackError
from pipeline.stack.nodes import REGISTRY_API_PATH, JavaNode, StackConfig, free_port, port_open
from pipeline.stack.vault import VaultNode

__all__ = [
    "REGISTRY_API_PATH",
    "JavaNode",
    "LocalStack",
    "StackConfig",
    "free_port",
    "port_open",
]

KAFKA_VERSION = "3.9.1"
REGISTRY_VERSION = "2.6.13.Final"

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
"""


def cluster_id() -> str:
    """A random KRaft cluster id: a UUID in base64url, never starting with '-' (as Kafka's own
    Uuid.randomUuid() ensures; a leading dash reads as a command-line option)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return "java"


class KafkaNode(JavaNode):
    """Apache Kafka in KRaft combined mode: one broker that is also the only controller."""

    name = "kafka"

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"

    def ports(self) -> tuple[int, ...]:
        secure = (self.config.secure_port,) if self.config.secure_port else ()
        return (self.config.kafka_port, self.config.controller_port, *secure)

    @property
    def ca_file(self) -> Path:
        """The CA of the SASL_SSL listener's certificate (clients trust it)."""
        return self.dir / "tls" / "ca.pem"

    def _classpath(self) -> str:
        jars = self.config.lib_dir.resolve() / "kafka"
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise StackError(f"Kafka jars not found in {jars}: run `make setup` first")
        return f"{jars}/*"

    def _jvm(self, main: str, *args: str, heap: str) -> list[str]:
        return [
            _java(),
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
            self.marker,
            "-cp",
            self._classpath(),
            main,
            *args,
        ]

    def command(self) -> list[str]:
        return self._jvm("kafka.Kafka", str(self.properties_file), heap=self.config.kafka_heap)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def _secure_properties(self) -> list[str]:
        if not self.config.secure_port:
            return []
        from pipeline.stack.certificates import write_server_tls

        tls = write_server_tls(self.dir / "tls")
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return [
            "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={tls.keystore_file}",
        ]

    def server_properties(self) -> str:
        """The broker's configuration: combined KRaft mode, loopback listeners only."""
        cfg = self.config
        data = self.data_dir
        listeners = [f"PLAINTEXT://127.0.0.1:{cfg.kafka_port}"]
        advertised = list(listeners)
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if cfg.secure_port:
            listeners.append(f"SASL_SSL://127.0.0.1:{cfg.secure_port}")
            advertised.append(f"SASL_SSL://{cfg.secure_bootstrap_servers}")
            protocols += ",SASL_SSL:SASL_SSL"
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{cfg.controller_port}",
                f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{cfg.controller_port}",
                f"advertised.listeners={','.join(advertised)}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                f"listener.security.protocol.map={protocols}",
                *self._secure_properties(),
                f"log.dirs={data}",
                "num.partitions=1",
                "default.replication.factor=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.cleaner.backoff.ms=1000",
                "log.retention.check.interval.ms=60000",
                "num.network.threads=2",
                "num.io.threads=4",
                "",
            ]
        )

    def prepare(self) -> None:
        (self.dir / "log4j.properties").write_text(_LOG4J)
        self.properties_file.write_text(self.server_properties())
        if (self.data_dir / "meta.properties").exists():
            return
        fmt = self._jvm(
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            f"--cluster-id={cluster_id()}",
            "-c",
            str(self.properties_file),
            heap="256m",
        )
        done = subprocess.run(fmt, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{done.stdout}\n{done.stderr}")

    def add_scram_users(self, users: tuple[tuple[str, str], ...]) -> None:
        """Create or update SCRAM-SHA-256 and -512 credentials through Kafka's own
        AlterUserScramCredentials API (what kafka-configs.sh --add-config uses)."""
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialAlteration,
            UserScramCredentialUpsertion,
        )

        admin = AdminClient({"bootstrap.servers": self.config.bootstrap_servers, "log_level": 0})
        # One mechanism per request: Kafka refuses two changes of one user in a request.
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
            changes: list[UserScramCredentialAlteration] = [
                UserScramCredentialUpsertion(
                    user, ScramCredentialInfo(mechanism, 8192), password.encode()
                )
                for user, password in users
            ]
            for _user, future in admin.alter_user_scram_credentials(changes).items():
                future.result(timeout=30)

    def ready(self) -> bool:
        if not port_open(self.config.kafka_port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.config.bootstrap_servers, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers) and metadata.controller_id >= 0


class RegistryNode(JavaNode):
    """Apicurio Registry serving the Confluent-compatible API. Its storage is the H2 database
    the "in-memory" build carries, kept in a file under the node's folder instead of in memory:
    schema ids survive a restart of the stack, so records written before it still decode."""

    name = "registry"

    @property
    def database(self) -> Path:
        return self.dir / "data" / "registry"

    def ports(self) -> tuple[int, ...]:
        return (self.config.registry_port,)

    def command(self) -> list[str]:
        home = self.config.lib_dir.resolve() / "registry"
        runners = sorted(home.glob("apicurio-registry-app-*-runner.jar"))
        if not runners:
            raise StackError(f"Apicurio Registry not found in {home}: run `make setup` first")
        return [
            _java(),
            f"-Xmx{self.config.registry_heap}",
            "-Xms64m",
            "-Djava.awt.headless=true",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.config.registry_port}",
            "-Dquarkus.http.non-application-root-path=/q",
            # Read by the build's %prod datasource URL (default jdbc:h2:mem:registry_db).
            f"-DREGISTRY_DATASOURCE_URL=jdbc:h2:file:{self.database}",
            self.marker,
            "-jar",
            str(runners[-1]),
        ]

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.config.registry_port}{REGISTRY_API_PATH}/subjects"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


@dataclass
class NodeStatus:
    name: str
    pids: list[int]
    ready: bool
    endpoint: str


class LocalStack:
    """The whole local stack: Kafka first, then the registry."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.kafka = KafkaNode(config)
        self.registry = RegistryNode(config)
        self.vault = VaultNode(config)
        self.nodes: tuple[JavaNode, ...] = (self.kafka, self.registry, self.vault)

    def up(self, report: Callable[[str], None] = lambda _msg: None) -> float:
        """Start what is not running and wait until all is ready. Returns elapsed seconds."""
        started = time.monotonic()
        try:
            for node in self.nodes:
                if node.start():
                    report(f"{node.name}: started (log: {node.log_file})")
                else:
                    report(f"{node.name}: already running (pid {node.pids()[0]})")
            for node in self.nodes:
                waited = node.wait_ready(self.config.ready_timeout_s)
                report(f"{node.name}: ready after {waited:.1f}s")
            if self.config.secure_users:
                self.kafka.add_scram_users(self.config.secure_users)
                report(
                    f"kafka: SASL_SSL on {self.config.secure_bootstrap_servers} "
                    f"({len(self.config.secure_users)} SCRAM users, CA {self.kafka.ca_file})"
                )
        except StackError:
            self.down()
            raise
        return time.monotonic() - started

    def down(self, report: Callable[[str], None] = lambda _msg: None) -> None:
        for node in reversed(self.nodes):
            stopped = node.stop()
            report(f"{node.name}: {'stopped' if stopped else 'not running'}")

    def status(self) -> list[NodeStatus]:
        return [
            NodeStatus(
                "kafka", self.kafka.pids(), self.kafka.ready(), self.config.bootstrap_servers
            ),
            NodeStatus(
                "registry", self.registry.pids(), self.registry.ready(), self.config.registry_url
            ),
            NodeStatus("vault", self.vault.pids(), self.vault.ready(), self.config.vault_url),
        ]
