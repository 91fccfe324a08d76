"""The bundled Neo4j 5.26 Community (graph/server: embedded, Bolt on 127.0.0.1), built
with Maven on first use and run in the background, with its store, log, pid and password
under `home/neo4j`. Used when no `NEO4J_URI` is set."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from rag_rec.errors import GraphUnavailable
from rag_rec.process import ManagedProcess
from rag_rec.settings import PROJECT_ROOT, GraphSettings

SERVER_DIR = PROJECT_ROOT / "graph" / "server"
LAUNCHER_CLASS = "rag_rec.graph.Launcher"


class BundledNeo4j:
    """The embedded Neo4j of graph/server, with its store, log and pid under `home/neo4j`."""

    def __init__(self, settings: GraphSettings, home: Path):
        self.settings = settings
        self.folder = home / "neo4j"
        self.process = ManagedProcess("neo4j", self.folder, marker=LAUNCHER_CLASS)

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.settings.bolt_port}"

    def password(self) -> str:
        """The configured password, else one generated on first use and kept (mode 600)."""
        if self.settings.password is not None:
            return self.settings.password.get_secret_value()
        path = self.folder / "password"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(18))
        return path.read_text().strip()

    def build(self) -> None:
        """Resolve the Neo4j jars from Maven Central and compile the launcher (once)."""
        jar = SERVER_DIR / "target" / "neo4j-launcher-0.1.0.jar"
        if jar.exists() and (SERVER_DIR / "target" / "lib").is_dir():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise GraphUnavailable("Maven (mvn) is needed to build the bundled Neo4j: "
                                   "install it (apt-get install maven) or set NEO4J_URI")
        subprocess.run([mvn, "-q", "-B", "-f", str(SERVER_DIR / "pom.xml"), "package"],
                       check=True)

    def start(self) -> int:
        self.build()
        java = shutil.which("java")
        if java is None:
            raise GraphUnavailable("Java 17+ is needed for the bundled Neo4j (apt-get install "
                                   "openjdk-17-jre-headless), or set NEO4J_URI")
        classpath = f"{SERVER_DIR / 'target' / 'neo4j-launcher-0.1.0.jar'}:{SERVER_DIR / 'target' / 'lib' / '*'}"
        cmd = [java, f"-Xmx{self.settings.heap}", "-cp", classpath, LAUNCHER_CLASS,
               str(self.folder / "store"), str(self.settings.bolt_port)]
        env = {**os.environ, "NEO4J_PASSWORD": self.password()}
        log_size = self.process.log_file.stat().st_size if self.process.log_file.exists() else 0

        def ready() -> bool:
            with open(self.process.log_file, "rb") as log:
                log.seek(log_size)
                return b"READY bolt://" in log.read()

        try:
            return self.process.start(cmd, env=env, ready=ready,
                                      timeout_s=self.settings.start_timeout_s,
                                      port=self.settings.bolt_port)
        except RuntimeError as exc:
            raise GraphUnavailable(f"the bundled Neo4j did not start: {exc}") from None

    def stop(self) -> bool:
        return self.process.stop()

    def pid(self) -> int | None:
        return self.process.pid()
