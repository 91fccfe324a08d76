"""Helpers shared by the benchmark scripts: percentiles, tables and the JSON results."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def settings_from_env() -> dict[str, str]:
    """The `RAG_REC_*` settings taken from the environment: recorded beside a figure,
    since they change what it is of (a child process inherits them)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAG_REC_")}


def latency_summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "mean_ms": round(float(ms.mean()), 2), "n": len(ms)}


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Write `eval/results/NAME.json` with the figures and where they were measured."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "machine": {"cpus": __import__("os").cpu_count(),
                           "platform": platform.platform(),
                           "python": platform.python_version()},
               **figures}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
