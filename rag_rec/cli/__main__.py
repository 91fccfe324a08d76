"""`python -m rag_rec.cli`: the same command as `rag-rec`."""

from rag_rec.cli import app

app()
