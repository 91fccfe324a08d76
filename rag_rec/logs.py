"""Where log records and warnings go: quiet terminal, complete log file.

`setup_logging(settings, verbose)` (the CLI calls it before any command runs):

- every logger's records at `log.file_level` and above go to `<home>/logs/rag-rec.log`
  (rotated at 10 MB): PyKEEN, torch, transformers, httpx/openai (the vLLM client), the
  Neo4j driver's notifications ("label `Meta` does not exist"), rag_rec itself;
- `warnings.warn` calls (torch's, pydantic's, ...) become log records
  (`logging.captureWarnings`), so they land in the file instead of the terminal;
- the terminal (stderr) shows rag_rec's own INFO lines (one per finished step) and other
  libraries' records only from `log.console_level` (default ERROR); `verbose` shows
  everything from INFO.

Libraries that install their own terminal handler (transformers does, on first use) are
pointed back at these handlers when they are imported, so their messages follow the same
rules instead of bypassing them; transformers' weight-loading bars show only with
`verbose`. rag_rec's own progress bars (embedding, ingest, training) stay.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from types import ModuleType

from rag_rec.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MARK = "_rag_rec_handler"


def log_file(settings: Settings) -> Path:
    """The log file these settings write to."""
    return settings.log.file or settings.home / "logs" / "rag-rec.log"


class _ConsoleFilter(logging.Filter):
    """rag_rec's INFO step lines always; other loggers from `level` up."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == "rag_rec" or record.name.startswith("rag_rec.")
        return record.levelno >= (logging.INFO if own else self.level)


def setup_logging(settings: Settings, verbose: bool = False) -> Path:
    """Configure the root logger (idempotent: a second call replaces the handlers this
    module added) and return the log file's path."""
    path = log_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()

    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000,
                                                        backupCount=3, encoding="utf-8")
    file_handler.setLevel(settings.log.file_level)
    file_handler.setFormatter(logging.Formatter(FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG)
    console.addFilter(_ConsoleFilter(logging.INFO if verbose
                                     else logging.getLevelName(settings.log.console_level)))
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for handler in (file_handler, console):
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(min(file_handler.level, logging.INFO))
    logging.getLogger("rag_rec").setLevel(logging.INFO)
    # Chatty per-request or per-frame records stay out even of the file.
    for name in ("httpcore", "urllib3", "matplotlib", "PIL", "filelock", "fsspec"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # Hugging Face libraries read these once, at import.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    _route_transformers(_transformers_hook(verbose))
    return path


# --------------------------------------------------------------------------- transformers


def _transformers_hook(verbose: bool):
    def route(module: ModuleType) -> None:
        """transformers logs through its own stderr handler with propagation off: hand its
        records to the root handlers instead. Its weight-loading bars (a fraction of a
        second per model, on every serving start) show only with `verbose`."""
        module.disable_default_handler()
        module.enable_propagation()
        if verbose:
            module.enable_progress_bar()
        else:
            module.disable_progress_bar()
    return route


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs a function on a module right after it is first imported."""

    def __init__(self, name: str, then):
        self.name, self.then, self.loader = name, then, None

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        self.then(module)


def _route_transformers(then) -> None:
    name = "transformers.utils.logging"
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not (isinstance(f, _AfterImport) and f.name == name)]
    if name in sys.modules:
        then(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, then))
