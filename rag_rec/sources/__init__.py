"""Candidate sources: strong recommenders behind one protocol, in memory.

A source is built from a `Catalogue` (item ids in index order, and the item vectors and
KG triples the content sources read) and its own settings, fit on interactions (tuning
its own knobs on held-out "tuning" items), then scores the whole catalogue for a batch
of `Query`s (a history, and for new users possibly a free-text vector and KG entities).
The union (retrieve.py) takes each source's top items; the scorer (scorer.py) reads
every source's score and rank for every candidate as features: it is a stacker over
these sources.

| name      | module       | what                                                      | fit     |
|-----------|--------------|-----------------------------------------------------------|---------|
| `ease`    | `ease.py`    | EASE (Steck 2019): closed-form item-item, L2 chosen on    | seconds |
|           |              | tuning items; past `max_items`, BM25 item-item neighbours |         |
| `ials`    | `ials.py`    | implicit ALS (`implicit`): factors and L2 chosen on       | seconds |
|           |              | tuning items                                              |         |
| `sasrec`  | `sasrec.py`  | SASRec next-item transformer, full-softmax cross-entropy, | minutes |
|           |              | early stop                                                |         |
| `markov`  | `markov.py`  | Markov chain: what followed the history's last item,      | seconds |
|           |              | window tuned                                              |         |
| `faiss`   | `vector.py`  | inner product with the user's fused text + KG vector      | none    |
|           |              | (FAISS index)                                             |         |
| `kg_path` | `kg_path.py` | items sharing KG entities with the history, each path     | none    |
|           |              | weighted 1/log2(1 + entity degree), hubs skipped          |         |
| `popular` | `popular.py` | train popularity                                          | none    |

`base.py` holds the protocol, `Query`, `Catalogue` and the shared helpers; `registry.py`
the sources by name (`source_resolver`, `make_source`); `fitting.py` a build's set of
sources (`fit_sources`, `save_sources`, `load_sources`).

Scores are `float32` arrays (queries x catalogue, the FAISS index's id order); `-inf`
marks what a source cannot score (an item added after it was fit). A source that cannot
fit raises `SourceUnavailable`; `fit_sources` goes on without it and reports why.
Co-rating neighbours (the graph's `collaborative_candidates`) are gone: EASE is the
same signal, solved exactly, and the ablation had nothing left for it to add.
"""

from rag_rec.sources.base import (
    BaseSource,
    CandidateSource,
    Catalogue,
    Query,
    SourceUnavailable,
    held_out_matrices,
    histories_of,
    tuning_ndcg,
)
from rag_rec.sources.ease import EASE
from rag_rec.sources.fitting import fit_sources, load_sources, save_sources
from rag_rec.sources.ials import IALS
from rag_rec.sources.kg_path import KGPath
from rag_rec.sources.markov import Markov
from rag_rec.sources.popular import Popular
from rag_rec.sources.registry import make_source, source_resolver
from rag_rec.sources.sasrec import SASRec, member_seed
from rag_rec.sources.vector import Faiss

__all__ = [
    "EASE",
    "IALS",
    "BaseSource",
    "CandidateSource",
    "Catalogue",
    "Faiss",
    "KGPath",
    "Markov",
    "Popular",
    "Query",
    "SASRec",
    "SourceUnavailable",
    "fit_sources",
    "held_out_matrices",
    "histories_of",
    "load_sources",
    "make_source",
    "member_seed",
    "save_sources",
    "source_resolver",
    "tuning_ndcg",
]
