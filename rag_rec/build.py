"""`rag-rec build`: every offline step, each reading the previous one's artifacts.

    data.load -> data.split -> graph.ingest (the build on all data only)
      -> validation items: a leave-last-out split's; else each user's latest interaction
         (random slices: a random share), cut first: below, only the served sources and
         the popularity counts learn from them
      -> ranker slices of the rest: per user, what the scorer will learn on, one per
         cross-fitting fold (`ranker_slice.folds`), each held out of its fold's sources
      -> embed.text -> embed.kg (PyKEEN, on the interactions in no slice) -> index
      -> per fold: sources fit on the rest minus its slice (knobs tuned on it)  "tuning"
      -> scorer trained on their candidate lists for the slices, calibrated   (stacking)
      -> sources refit on all train (warm-started from fold 0's tuning fit)   "serving"
         (the full build also refits them without its validation items        "holdout")
      -> the blend: the best source's final weight and the calibration, chosen on
         those sources' lists for the validation items, and for short histories
         weights and a calibration of their own, chosen on short histories cut from
         those users' (scorer.Blend, short_lists)
      -> the P(like) head (like/) on the observed ratings

Each step keeps its artifact under `<home>/builds/<split>/<step>-<key>/`, the key derived
from the settings and the steps it reads (rag_rec/steps.py): `kg-*`, `index-*`,
`sources-*/{tuning,tuning-fold1,...,serving,holdout}`, `scorer-*`, `like-*`, so ablations
reuse what they share. A second run skips every step whose record matches its key. Split builds (evaluation) never touch the graph: ranking runs in
memory, and the evaluation hands each user's history over itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from rag_rec import like
from rag_rec.artifacts import (
    Artifacts,
    build_facts,
    load_artifacts,
    step_folder,
    text_vectors,
)
from rag_rec.data import load_dataset, make_split
from rag_rec.embed import KGEmbeddings, fuse, item_node, kg_triples, train_kg_embeddings
from rag_rec.errors import StaleArtifact
from rag_rec.graph import GraphClient
from rag_rec.index import ItemIndex
from rag_rec.retrieve import Retriever, union_weights
from rag_rec.scorer import (
    Blend,
    Featurizer,
    Lists,
    Scorer,
    make_lists,
    ranker_slice,
    unsliced,
    validation,
)
from rag_rec.settings import Settings
from rag_rec.steps import check_step, digest, record_step, step_inputs, timed
from rag_rec.sources import (
    CandidateSource,
    fit_sources,
    histories_of,
    load_sources,
    save_sources,
)

log = logging.getLogger(__name__)


def scorer_sources(settings: Settings) -> list[str]:
    """The sources the scorer stacks: the enabled ones minus an ablation's drops."""
    return [s for s in settings.sources.enabled if s not in settings.scorer.drop_sources]


@dataclass
class Ranker:
    """What `rank` needs besides the artifacts: fitted sources and the scorer."""

    sources: dict[str, CandidateSource]
    """Name -> fitted source (serving: fit on all train)."""
    report: dict
    """Each source's fit report; `{"unavailable": why}` for one that could not fit."""
    scorer: Scorer


def build(settings: Settings, split_name: str | None = None, *, progress: bool = True,
          ingest: bool = True, ranker: bool = True) -> Artifacts:
    """Run every build step for `split_name` (None: all interactions), skipping finished
    ones, and return the artifacts (`ranker=False` stops before the sources)."""
    # PyKEEN (through pystow) writes checkpoints under ~/.data unless told otherwise.
    os.environ.setdefault("PYSTOW_HOME", str(settings.home / "pystow"))
    ds = load_dataset(settings.data, settings.home)
    split = make_split(ds, split_name, seed=settings.data.seed) if split_name else None
    if not ds.meta.has_timestamps and settings.ranker_slice.kind == "latest":
        log.warning("dataset %r has no timestamps: each user's 'latest' items (the ranker "
                    "slice, the full build's validation items) follow the file's row order; "
                    "RAG_REC_RANKER_SLICE__KIND=random draws the slice at random", ds.name)
    name = split.name if split is not None else "full"
    builds = settings.home / "builds" / name
    if split is None and ingest:
        with timed(builds, "graph"), GraphClient(settings.graph, settings.home) as graph:
            graph.ensure_holds(ds, None, progress=progress)
    steps = step_inputs(settings, build_facts(settings, ds, split))
    rebuild = "rag-rec build" + (f" --split {name}" if split else "")
    with timed(builds, "text"):
        text = text_vectors(settings, ds, progress)

    def train_kg(folder: Path) -> None:
        fit_part = unsliced(validation(split.train if split is not None else ds.interactions,
                                       split.valid if split is not None else None,
                                       settings.ranker_slice)[0], settings.ranker_slice)
        train_kg_embeddings(kg_triples(ds, fit_part), settings.embed).save(folder)

    def index_items(folder: Path) -> None:
        kg = KGEmbeddings.load(step_folder(settings.home, name, "kg", digest(steps["kg"])))
        ids = list(ds.items.index)
        kg_rows = np.stack([kg.vector(item_node(i)) for i in ids])
        index = ItemIndex(len(next(iter(text.values()))) + kg.dim, settings.index,
                          n_expected=len(ids))
        index.add(ids, fuse(np.stack([text[i] for i in ids]), kg_rows))
        index.save(folder)

    for step, make in (("kg", train_kg), ("index", index_items)):
        ensure_step(step_folder(settings.home, name, step, digest(steps[step])), steps[step],
                    rebuild, make)
    artifacts = load_artifacts(settings, split_name, ds=ds, text=text)
    if ranker:
        load_or_fit_ranker(settings, artifacts, progress=progress)
        reason = like.unavailable_reason(ds)
        if reason is not None:  # said, and recorded so serving says it too
            log.warning("like step skipped: %s", reason)
        ensure_step(artifacts.folder("like"), steps["like"], rebuild,
                    lambda folder: (like.UnavailableLike(reason) if reason is not None
                                    else like.LikeModel.fit(ds, split, artifacts.index,
                                                            settings.like)).save(folder))
    return artifacts


def ensure_step(folder: Path, inputs: dict, rebuild: str, make: Callable[[Path], None]) -> None:
    """Run `make(folder)` unless `folder` already holds this step's artifact for `inputs`;
    the record is written after it, so an interrupted step runs again."""
    try:
        check_step(folder, digest(inputs), rebuild)
    except StaleArtifact:
        with timed(folder.parent, inputs["step"]):
            make(folder)
        record_step(folder, inputs)


def load_ranker(settings: Settings, artifacts: Artifacts) -> Ranker:
    """The build's serving sources and scorer; `StaleArtifact` naming the fix if absent."""
    sources, report = load_sources(artifacts, settings.sources, settings.retrieval,
                                   artifacts.folder("sources") / "serving")
    scorer = Scorer.load(artifacts.folder("scorer"), artifacts, settings.scorer,
                         scorer_sources(settings))
    if scorer.blend is None:
        raise StaleArtifact(f"the scorer in {artifacts.folder('scorer')} has no blend "
                            f"for this build's validation items (an interrupted build, or one "
                            f"made before they changed); run `{artifacts.rebuild}`")
    return Ranker(sources, report, scorer)


def _sources_in(where: Path, settings: Settings, artifacts: Artifacts, train: pd.DataFrame,
                tune: pd.DataFrame | None = None, *,
                warm: dict[str, CandidateSource] | None = None,
                progress: bool) -> tuple[dict[str, CandidateSource], dict]:
    """(sources, their fit report) saved in `where`, or fit on `train` and saved there."""
    args = (artifacts, settings.sources, settings.retrieval)
    try:
        return load_sources(*args, where)
    except StaleArtifact:
        with timed(where.parent.parent, f"sources/{where.name}"):
            fitted, report = fit_sources(*args, train, tune, warm=warm, progress=progress)
        save_sources(fitted, report, where)
        record_step(where, artifacts.steps["sources"])
        return fitted, report


@contextmanager
def fit_beside(settings: Settings, artifacts: Artifacts, holdout: Path | None
               ) -> Iterator[None]:
    """While the body runs, fit the holdout sources into `holdout` (None: none needed) in
    a child process, the body and the child on one thread each: two cores train two
    SASRecs ~1.4x faster side by side than one after the other on two threads each. A
    child that fails is logged, and `_sources_in` then fits them in this process."""
    # A daemonic process (a pool's worker) may not start one of its own.
    if (holdout is None or (os.cpu_count() or 1) < 2
            or multiprocessing.current_process().daemon or _finished(holdout, artifacts)):
        yield
        return
    child = multiprocessing.get_context("spawn").Process(
        target=_fit_holdout, args=(settings, artifacts.split.name if artifacts.split else None),
        name="rag-rec holdout sources")
    child.start()
    threads = torch.get_num_threads()
    try:
        with threadpool_limits(1):
            torch.set_num_threads(1)
            yield
    except BaseException:
        child.terminate()
        child.join()
        raise
    finally:
        torch.set_num_threads(threads)
    child.join()
    if child.exitcode:
        log.warning("fitting the holdout sources in a process of their own failed (exit "
                    "code %s); fitting them here", child.exitcode)


def _finished(folder: Path, artifacts: Artifacts) -> bool:
    try:
        check_step(folder, artifacts.key("sources"), artifacts.rebuild)
    except StaleArtifact:
        return False
    return True


def _fit_holdout(settings: Settings, split_name: str | None) -> None:
    """`fit_beside`'s child: the holdout sources, from the build's saved artifacts and
    fold 0's tuning sources (what `load_or_fit_ranker` would give them)."""
    torch.set_num_threads(1)
    with threadpool_limits(1):
        artifacts = load_artifacts(settings, split_name)
        base, _, _ = validation(artifacts.train,
                                artifacts.split.valid if artifacts.split else None,
                                settings.ranker_slice)
        folder = artifacts.folder("sources")
        tuning, _ = load_sources(artifacts, settings.sources, settings.retrieval,
                                 folder / "tuning")
        _sources_in(folder / "holdout", settings, artifacts, base, warm=tuning,
                    progress=False)


def blend_lists(artifacts: Artifacts, settings: Settings, scorer: Scorer,
                checked: dict[str, CandidateSource], fit_part: pd.DataFrame,
                held: pd.DataFrame, *, progress: bool = False) -> Lists:
    """The candidate lists the blend is chosen on: the union of `checked` (sources fit on
    `fit_part`) for each user, labelled by their validation items `held`."""
    return make_lists(scorer.feat, _checked_retriever(artifacts, settings, scorer, checked),
                      histories_of(fit_part), held, held, progress=progress)


def _checked_retriever(artifacts: Artifacts, settings: Settings, scorer: Scorer,
                       checked: dict[str, CandidateSource]) -> Retriever:
    """The union the blend's lists come from: `checked` sources, the scorer's weights."""
    return Retriever(artifacts, {n: s for n, s in checked.items() if n in scorer.sources},
                     scorer.sources, settings.retrieval, scorer.union_weights)


SHORT_KEEP = 5
"""How many items a simulated short history keeps (`short_lists`): loo-cold's cold users
keep 5 train ratings."""


def short_lists(artifacts: Artifacts, settings: Settings, scorer: Scorer,
                checked: dict[str, CandidateSource], fit_part: pd.DataFrame,
                held: pd.DataFrame, *, progress: bool = False) -> Lists | None:
    """Short histories for the blend to choose their weights on, simulated from the long
    ones of `blend_lists`: each cut to its latest `SHORT_KEEP` items (a new user) and to
    its first `SHORT_KEEP - 1` and its latest (a user back after a long gap), labelled by
    the same validation items. The user's other items stay out of the candidates, and
    the lists are anonymous (no user KG vector): only the short history speaks. None when
    short histories get no weights of their own (`blend_short_history` 0, or below
    `SHORT_KEEP`: no simulated history would be served as short) or none is long enough to
    cut."""
    threshold = settings.scorer.blend_short_history
    if threshold < SHORT_KEEP:
        return None
    cut = {"latest": lambda h: h[-SHORT_KEEP:], "back": lambda h: h[:SHORT_KEEP - 1] + h[-1:]}
    histories, rated, labelled = {}, {}, set(held.user_id)
    for user, history in histories_of(fit_part).items():
        if len(history) > threshold and user in labelled:
            for shape, keep in cut.items():
                histories[f"{user}/{shape}"] = keep(history)
                rated[f"{user}/{shape}"] = {i for i, _ in history}
    if not histories:
        return None
    targets = pd.concat([held.assign(user_id=held.user_id + f"/{shape}") for shape in cut])
    return make_lists(scorer.feat, _checked_retriever(artifacts, settings, scorer, checked),
                      histories, targets, targets, progress=progress, exclude=rated)


def load_or_fit_ranker(settings: Settings, artifacts: Artifacts, *,
                       progress: bool = True) -> Ranker:
    """The stacking steps of the build (see the module docstring), each skipped when its
    artifact is already there."""
    folder = artifacts.folder("sources")
    scorer_folder = artifacts.folder("scorer")
    names = scorer_sources(settings)
    base, valid, chosen_on = validation(artifacts.train,
                                        artifacts.split.valid if artifacts.split else None,
                                        settings.ranker_slice)
    # Per cross-fitting fold: (what its sources fit on, its slice), and those sources.
    slices = [ranker_slice(base, settings.ranker_slice, fold)
              for fold in range(settings.ranker_slice.folds)]
    tuning = [_sources_in(folder / ("tuning" if fold == 0 else f"tuning-fold{fold}"),
                          settings, artifacts, fit_part, slice_part, progress=progress)[0]
              for fold, (fit_part, slice_part) in enumerate(slices)]
    # The serving sources and the full build's holdout sources both start from fold 0's
    # tuning fit and need nothing else: they are fit at once, the holdout in a process of
    # its own, before the scorer.
    holdout = folder / "holdout" if chosen_on != "validation" else None
    with fit_beside(settings, artifacts, holdout):
        serving, report = _sources_in(folder / "serving", settings, artifacts,
                                      artifacts.train, warm=tuning[0], progress=progress)
    try:
        scorer = Scorer.load(scorer_folder, artifacts, settings.scorer, names)
    except StaleArtifact:
        with timed(scorer_folder.parent, "scorer"):
            feat = Featurizer(artifacts, settings.scorer, names)
            parts, weights, union = [], None, None
            for fitted, (fit_part, slice_part) in zip(tuning, slices):
                stacked = {n: s for n, s in fitted.items() if n in names}
                histories = histories_of(fit_part)
                if weights is None:  # the union's shape is chosen once, on the first fold
                    weights, union = union_weights(artifacts, stacked, histories, slice_part,
                                                   settings.retrieval)
                retriever = Retriever(artifacts, stacked, names, settings.retrieval, weights)
                # p_next is calibrated for what the protocol asks: the very next interaction
                # (the slice's first item) for "latest", the whole random share otherwise.
                calibrate_on = (slice_part.groupby("user_id").head(1)
                                if settings.ranker_slice.kind == "latest" else slice_part)
                parts.append(make_lists(feat, retriever, histories, slice_part, calibrate_on,
                                        progress=progress))
            scorer = Scorer.fit(feat, Lists.concat(parts), names, weights,
                                scorer_folder, union=union, progress=progress)
        record_step(scorer_folder, artifacts.steps["scorer"])
    if scorer.blend is None:
        # A split's validation items lie outside what the served sources fit on: they
        # are checked as served. The full build's holdout needs sources fit without it.
        # Fit beside the serving sources above: loaded here (fit here if that failed).
        checked = serving if holdout is None else _sources_in(
            holdout, settings, artifacts, base, warm=tuning[0], progress=progress)[0]
        with timed(scorer_folder.parent, "blend"):
            lists = blend_lists(artifacts, settings, scorer, checked, base, valid,
                                progress=progress)
            short = short_lists(artifacts, settings, scorer, checked, base, valid,
                                progress=progress)
            scorer.blend = Blend.fit(scorer.model, lists, names, scorer.feat.trained,
                                     settings.scorer.blend_short_history, chosen_on, short)
            scorer.save(scorer_folder)
    return Ranker(serving, report, scorer)
