"""The FAISS item index: build, save, load, search, and add or update items without a
rebuild.

Callers see item ids only: FAISS stores row numbers, and the explicit id map here turns
them back into ids, so a row number never leaks. The index kind follows the catalogue
size (exact inner product up to `exact_max_items`, HNSW beyond); on a machine where the
FAISS build has GPUs, exact search runs on the GPU. A saved index carries its dimension
and size (its build step records its key), and loading a corrupt one raises `StaleArtifact`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import faiss
import numpy as np

from rag_rec.errors import StaleArtifact
from rag_rec.settings import IndexSettings

REBUILD = "rebuild it with `rag-rec build`"


class ItemIndex:
    dense_k = 2000
    """Neighbours an approximate (HNSW) index returns for `dense_scores`."""

    def __init__(self, dim: int, settings: IndexSettings, n_expected: int = 0):
        self.dim = dim
        self.ids: list[str] = []
        self._row: dict[str, int] = {}
        self.kind = settings.kind
        if self.kind == "auto":
            self.kind = "flat" if n_expected <= settings.exact_max_items else "hnsw"
        if self.kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
        else:
            self.index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        self._attach_search()

    def _attach_search(self) -> None:
        """Exact search runs on a GPU copy where the FAISS build has GPUs; the CPU index
        stays the one saved and the one HNSW uses."""
        self._search_index = self.index
        if self.kind == "flat" and hasattr(faiss, "StandardGpuResources") \
                and faiss.get_num_gpus() > 0:
            self._gpu = faiss.StandardGpuResources()
            self._search_index = faiss.index_cpu_to_gpu(self._gpu, 0, self.index)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._row

    def add(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Append items (no rebuild). Ids must be new; vectors are (n, dim)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(item_ids), self.dim):
            raise ValueError(f"expected {len(item_ids)} vectors of dim {self.dim}, "
                             f"got shape {vectors.shape}")
        clash = [i for i in item_ids if i in self._row] or (
            [i for i in item_ids if list(item_ids).count(i) > 1])
        if clash:
            raise ValueError(f"item ids already in the index: {sorted(set(clash))[:5]}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or inf")
        for item_id in item_ids:
            self._row[item_id] = len(self.ids)
            self.ids.append(item_id)
        self.index.add(vectors)
        if self._search_index is not self.index:
            self._search_index.add(vectors)

    def replace(self, item_id: str, vector: np.ndarray) -> bool:
        """Overwrite an item's vector in place (an item updated live). Only an exact
        (flat) index can: HNSW's graph was built around the old vector, so it keeps it
        until the next build and this returns False."""
        if self.kind != "flat":
            return False
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(self.dim)
        if not np.isfinite(vector).all():
            raise ValueError("vector contains NaN or inf")
        stored = faiss.rev_swig_ptr(self.index.get_xb(), self.index.ntotal * self.dim)
        row = self._row[item_id]
        stored[row * self.dim:(row + 1) * self.dim] = vector
        if self._search_index is not self.index:
            self._attach_search()  # the GPU copy is a copy: make it again
        return True

    def vector(self, item_id: str) -> np.ndarray:
        return self.index.reconstruct(self._row[item_id])

    def search(self, queries: np.ndarray, k: int,
               exclude: Iterable[set[str]] | None = None) -> list[list[tuple[str, float]]]:
        """Top-`k` (item id, inner product) per query row, skipping each row's `exclude`."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        excludes = list(exclude) if exclude is not None else [set()] * len(queries)
        widest = max((len(e) for e in excludes), default=0)
        n = min(len(self.ids), k + widest)
        if n == 0:
            return [[] for _ in queries]
        scores, rows = self._search_index.search(queries, n)
        out = []
        for row_scores, row_ids, skip in zip(scores, rows, excludes):
            hits = [(self.ids[r], float(s)) for r, s in zip(row_ids, row_scores)
                    if r >= 0 and self.ids[r] not in skip]
            out.append(hits[:k])
        return out

    def dense_scores(self, queries: np.ndarray) -> np.ndarray:
        """(queries x items) inner products in id order: exact for a flat index; HNSW
        finds the nearest `dense_k` and leaves -inf elsewhere."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        out = np.full((len(queries), len(self.ids)), -np.inf, dtype=np.float32)
        n = len(self.ids) if self.kind == "flat" else min(len(self.ids), self.dense_k)
        if n:
            scores, rows = self._search_index.search(queries, n)
            valid = rows >= 0
            out[np.nonzero(valid)[0], rows[valid]] = scores[valid]
        return out

    # -- persistence

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "items.faiss"))
        (folder / "ids.json").write_text(json.dumps(
            {"ids": self.ids, "dim": self.dim, "kind": self.kind}))

    @classmethod
    def load(cls, folder: Path, settings: IndexSettings) -> ItemIndex:
        """The index saved in `folder` (whose build step checked its key); `StaleArtifact`
        when it is corrupt."""
        meta_path, index_path = folder / "ids.json", folder / "items.faiss"
        try:
            meta = json.loads(meta_path.read_text())
            raw = faiss.read_index(str(index_path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise StaleArtifact(f"index {index_path} is missing or corrupt "
                                f"({' '.join(str(exc).split())[:200]}); {REBUILD}") from None
        if raw.ntotal != len(meta["ids"]) or raw.d != meta["dim"]:
            raise StaleArtifact(f"index {index_path} holds {raw.ntotal} vectors of dim {raw.d} "
                                f"but {meta_path} maps {len(meta['ids'])} ids of dim "
                                f"{meta['dim']}; {REBUILD}")
        index = cls(meta["dim"], settings.model_copy(update={"kind": meta["kind"]}))
        index.index = raw
        index._attach_search()
        index.ids = list(meta["ids"])
        index._row = {i: r for r, i in enumerate(index.ids)}
        return index
