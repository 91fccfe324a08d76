"""The `rag-rec` command: light commands import no heavy library, the output is short and
each number is headed by what it is, and library logs go to the log file (and to the
terminal only with -v)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "vllm", "pykeen", "transformers", "faiss")


def _run(args: list[str], log: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAG_REC_LOG__FILE": str(log), "COLUMNS": "80"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_help_and_light_commands_import_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from rag_rec.cli import app\n"
        "for args in (['--help'], ['graph', '--help'], ['data', 'stats', '--json']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = _run(["-c", code], tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_serving_imports_nothing_only_fitting_needs(tmp_path: Path) -> None:
    """`rag-rec recommend` must start in seconds: sklearn/scipy.stats (~1 s), PyKEEN and
    transformers are for fitting and encoding new text, never imported to serve."""
    fitting = ("sklearn", "scipy.stats", "pykeen", "transformers", "vllm")
    code = ("import sys\nimport rag_rec.recommender, rag_rec.cli\n"
            f"print('FIT', sorted(m for m in {fitting!r} if m in sys.modules))\n")
    proc = _run(["-c", code], tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "FIT []"


def test_data_stats_is_short_and_quiet(tmp_path: Path) -> None:
    proc = _run(["-m", "rag_rec.cli", "data", "stats"], tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    assert "interactions" in proc.stdout and proc.stderr == ""
    assert len(_lines(proc)) <= 20


def test_data_export_with_writes_folds_the_journal(tmp_path: Path, monkeypatch) -> None:
    from rag_rec.data import load_dataset
    from rag_rec.live import Journal, journal_path
    from rag_rec.settings import DataSettings

    tiny = Path(__file__).parent / "data" / "tiny"
    for name, value in {"HOME": tmp_path, "DATA__SOURCE": tiny,
                        "DATA__KG_DIR": tiny / "kg"}.items():
        monkeypatch.setenv(f"RAG_REC_{name}", str(value))
    ds = load_dataset(DataSettings(source=tiny, kg_dir=tiny / "kg"), tmp_path)
    item = ds.items.index[0]
    journal = Journal(journal_path(tmp_path, "full", ds.fingerprint))
    journal.append("interaction", {"user_id": "new-user", "item_id": item, "rating": 4.0,
                                   "timestamp": 1_700_000_000})
    journal.append("hide", {"item_id": item})
    journal.close()
    out = tmp_path / "out"
    proc = _run(["-m", "rag_rec.cli", "data", "export", str(out), "--with-writes",
                 "--json"], tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["folded.interaction"], report["folded.hide"]) == (1, 1)
    assert f"new-user,{item},4,1700000000" in (out / "interactions.csv").read_text()
    first = (out / "items.csv").read_text().splitlines()[1]
    assert first.startswith(f"{item},") and first.endswith(",true")


def test_recommend_is_short_headed_and_logs_libraries(artifacts, tmp_path: Path) -> None:
    log = tmp_path / "rag-rec.log"
    proc = _run(["-m", "rag_rec.cli", "recommend", "--user", "42", "--no-explain"], log)
    assert proc.returncode == 0, proc.stderr
    lines = _lines(proc)
    # 10 items of one line, the heading, the legend and the status line.
    assert len(lines) <= 20, "\n".join(lines)
    assert "P(next)" in proc.stdout and "P(like)" in proc.stdout
    assert "what you watch next" in proc.stdout and "4 or 5" in proc.stdout
    asked = _run(["-m", "rag_rec.cli", "recommend", "--user", "42", "--k", "3", "--genre",
                  "Comedy", "--decade", "1990", "--without", "Jim Carrey"], log)
    assert asked.returncode == 0, asked.stderr
    assert "Understood: any genres: Comedy" in asked.stdout and "Jim Carrey" in asked.stdout
    assert max(map(len, asked.stdout.splitlines())) <= 80  # reads in a plain terminal
    assert "Loading weights" not in proc.stderr and "Warning" not in proc.stderr
    loggers = {line.split()[3].rstrip(":") for line in log.read_text().splitlines()
               if line[:4].isdigit() and len(line.split()) > 3}
    assert any(not name.startswith("rag_rec") for name in loggers), loggers


ROUTING = """
import logging, sys, warnings
from rag_rec.logs import setup_logging
from rag_rec.settings import Settings

setup_logging(Settings(log={"file": sys.argv[1]}), verbose=sys.argv[2] == "1")
logging.getLogger("neo4j.notifications").warning("label `Meta` does not exist")
logging.getLogger("pykeen.training").info("pykeen epoch done")
warnings.warn("a library UserWarning")
logging.getLogger("rag_rec.build").info("step finished: index")
import transformers.utils.logging as tl
tl.get_logger("transformers.modeling_utils").warning("transformers speaks")
"""
MESSAGES = ("label `Meta` does not exist", "pykeen epoch done", "a library UserWarning",
            "step finished: index", "transformers speaks")


@pytest.mark.parametrize("verbose", [False, True])
def test_library_logs_go_to_the_file_and_to_the_terminal_only_with_verbose(
        tmp_path: Path, verbose: bool) -> None:
    log = tmp_path / "logs" / "rag-rec.log"
    proc = _run(["-c", ROUTING, str(log), "1" if verbose else "0"], log, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert all(m in text for m in MESSAGES), text
    shown = [m for m in MESSAGES if m in proc.stderr]
    assert shown == (list(MESSAGES) if verbose else ["step finished: index"]), proc.stderr
