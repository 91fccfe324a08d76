"""KG embedding training speed and link-prediction quality, on CPU or GPU.

    uv run --extra cpu python -m eval.bench_kg                 # train here, from the data
    uv run --extra cpu python -m eval.bench_kg --export F.npz  # save the triples only
    python -m eval.bench_kg --triples F.npz                    # train from saved triples
                                                               # (e.g. on a GPU machine)

Trains the configured PyKEEN model (settings `embed.kg_*`) on the `loo` train split's
triples (KG facts + user-rated-item) on the best device present, and writes
eval/results/kg_<device>.json with the training time, epochs, MRR and Hits@10.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from eval.common import print_table, write_results
from rag_rec.embed import train_kg_embeddings
from rag_rec.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triples", type=Path, help="train from this .npz of triples")
    parser.add_argument("--export", type=Path, help="only save the triples to this .npz")
    args = parser.parse_args()
    settings = get_settings()
    if args.triples:
        triples = np.load(args.triples)["triples"]
    else:
        from rag_rec.data import load_dataset, make_split
        from rag_rec.embed import kg_triples

        ds = load_dataset(settings.data, settings.home)
        triples = kg_triples(ds, make_split(ds, "loo", seed=settings.data.seed).train)
    if args.export:
        np.savez_compressed(args.export, triples=triples)
        print(f"saved {len(triples)} triples to {args.export}")
        return
    report = train_kg_embeddings(triples, settings.embed, "bench").report
    report.pop("fingerprint")
    print_table("KG embeddings (loo train split)", [
        {k: report[k] for k in ("model", "dim", "device", "train_seconds", "epochs", "mrr",
                                "hits_at_10")}])
    print(f"wrote {write_results('kg_' + report['device'], {'kg': report})}")


if __name__ == "__main__":
    main()
