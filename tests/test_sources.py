"""Candidate sources and their union on the real data: unseen items only, deterministic
under a seed, the in-memory KG paths equal to the graph's query, a source that cannot
fit left out and flagged, and no ranker-slice leakage into what the scorer stacks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from rag_rec.build import SHORT_KEEP, blend_lists, load_ranker, scorer_sources, short_lists
from rag_rec.data import Dataset, make_split
from rag_rec.embed import RATED, kg_triples, user_node
from rag_rec.errors import StaleArtifact
from rag_rec.retrieve import Retriever
from rag_rec.scorer import (BLEND_WEIGHTS, SHORT_RULE, Blend, Scorer, _standardised, list_ndcg,
                            predict, ranker_slice, unsliced, validation)
from rag_rec.settings import Settings, updated
from rag_rec.sources import (
    EASE,
    IALS,
    Catalogue,
    Markov,
    Query,
    SASRec,
    SourceUnavailable,
    fit_sources,
    histories_of,
    load_sources,
    member_seed,
)


@pytest.fixture(scope="module")
def ranker(settings: Settings, artifacts):
    return load_ranker(settings, artifacts)


def _history(dataset: Dataset, user_id: str) -> list[tuple[str, float]]:
    return [(i.item_id, i.rating) for i in dataset.history(user_id)]


def test_each_source_and_the_union_return_only_unseen_items(settings: Settings, artifacts,
                                                            ranker, dataset: Dataset) -> None:
    assert set(ranker.sources) == set(settings.sources.enabled), ranker.report
    users = ["1", "42", "405"]
    queries = [Query(_history(dataset, u)) for u in users]
    for name, source in ranker.sources.items():
        retriever = Retriever(artifacts, {name: source}, [name], settings.retrieval)
        for q, r in zip(queries, retriever.retrieve(queries)):
            seen = {i for i, _ in q.history}
            assert len(r.items) == settings.retrieval.budget and not seen & set(r.items)
            assert any(name in p for p in r.proposed_by), name
            assert np.isfinite(r.features).all()
    union = Retriever(artifacts, ranker.sources, list(ranker.sources),
                      settings.retrieval).retrieve(queries, exclude=[{"50"}, set(), set()])
    assert "50" not in union[0].items


def test_low_weight_sources_keep_their_own_order_for_cold_users(settings: Settings,
                                                                 artifacts, ranker) -> None:
    """A sharp union gives weak sources weights near 0; an empty history (only popularity
    can answer) must still come in popularity order, not catalogue order."""
    tiny = {name: 1e-40 for name in ranker.sources}
    retriever = Retriever(artifacts, ranker.sources, list(ranker.sources), settings.retrieval,
                          tiny)
    got = retriever.retrieve([Query([])])[0].items[:10]
    pop = ranker.sources["popular"].scores([Query([])])[0]
    ids = artifacts.index.ids
    assert got == [ids[c] for c in np.argsort(-pop, kind="stable")[:10]]


def test_sources_are_deterministic_under_a_seed(settings: Settings, artifacts,
                                                dataset: Dataset) -> None:
    inter = dataset.interactions
    small = inter[inter.user_id.isin([str(u) for u in range(1, 120)])]
    tune = small.sort_values("timestamp").groupby("user_id").tail(1)
    cfg = updated(settings.sources, {"sasrec": {"epochs": 2, "eval_every": 1}})
    queries = [Query(_history(dataset, u)[:-1]) for u in ("3", "77")]
    uncropped = updated(cfg, {"sasrec": {"crop": 0}})
    assert cfg.sasrec.crop  # the default source trains with crops
    catalogue = Catalogue.of(artifacts)
    # One thread: multi-threaded float sums change order between runs, and two epochs of
    # training grow that to ~1e-4 (seen with the ids-only SASRec on a busy machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for cls, c in ((EASE, cfg), (IALS, cfg), (Markov, cfg), (SASRec, uncropped),
                       (SASRec, cfg)):
            runs = []
            for _ in range(2):
                source = cls.from_settings(catalogue, c, settings.retrieval)
                source.fit(small, tune)
                runs.append(source.scores(queries))
            np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4, atol=1e-5)
        other = SASRec(catalogue, cfg.sasrec, seed=7)
        other.fit(small, tune)
    finally:
        torch.set_num_threads(threads)
    assert not np.allclose(other.scores(queries), runs[1], rtol=1e-4, atol=1e-5)


def test_sasrec_crops_are_the_first_items_then_a_later_stretch(settings: Settings,
                                                                artifacts) -> None:
    cfg = settings.sources.sasrec.model_copy(update={"crop": 3, "crop_keep": 2})
    source = SASRec(Catalogue.of(artifacts), cfg)
    seqs = [list(range(1, 21)), [1, 2, 3, 4, 5, 6]]  # the second is too short to crop
    cuts = set()
    for seed in range(20):
        crops = source._crops(seqs, torch.Generator().manual_seed(seed))
        assert crops.shape == (1, cfg.max_len + 1)
        part = [int(i) for i in crops[0] if i]
        assert part[:2] == [1, 2] and len(part) == 5
        assert part[2] >= 4 and part[2:] == list(range(part[2], part[2] + 3))  # a gap, then
        cuts.add(part[2])
    assert len(cuts) > 3  # drawn anew: not always the same stretch


def test_sasrec_members_are_averaged_and_saved_together(settings: Settings, artifacts,
                                                        dataset: Dataset, tmp_path) -> None:
    inter = dataset.interactions
    small = inter[inter.user_id.isin([str(u) for u in range(1, 80)])]
    cfg = settings.sources.sasrec.model_copy(update={"epochs": 1, "members": 2})
    queries = [Query(_history(dataset, u)) for u in ("3", "77")]
    catalogue = Catalogue.of(artifacts)
    pair = SASRec(catalogue, cfg, settings.sources.seed)
    report = pair.fit(small, None)
    assert len(pair.nets) == 2 and len(report["members"]) == 1
    got = pair.scores(queries)
    alone = []
    for net in pair.nets:
        one = SASRec(catalogue, cfg.model_copy(update={"members": 1}), settings.sources.seed)
        one.nets, one.best_epoch = [net], pair.best_epoch
        alone.append(torch.log_softmax(torch.from_numpy(one.scores(queries)), -1).numpy())
    assert not np.allclose(alone[0], alone[1])  # two inits, not one model twice
    np.testing.assert_allclose(got, (alone[0] + alone[1]) / 2, rtol=1e-5, atol=1e-5)
    pair.save(tmp_path)
    back = SASRec(catalogue, cfg, settings.sources.seed)
    back.load(tmp_path)
    np.testing.assert_allclose(back.scores(queries), got, rtol=1e-6)
    # A build whose settings ask for another number of members refits instead of serving
    # a pair as one model.
    with pytest.raises(ValueError, match="2 SASRec members saved"):
        SASRec(catalogue, cfg.model_copy(update={"members": 3})).load(tmp_path)


def test_sasrec_members_of_neighbouring_seeds_start_apart() -> None:
    # Evaluation seeds 42, 43, 44 must be three independent draws of the pair: with
    # `seed + k`, member 1 of seed 42 started exactly as member 0 of seed 43.
    seeds = [member_seed(s, k) for s in (42, 43, 44) for k in range(3)]
    assert len(set(seeds)) == len(seeds)
    assert [member_seed(s, 0) for s in (42, 43)] == [42, 43]  # one member: as before


def test_markov_ranks_what_followed_the_last_item(settings: Settings, artifacts,
                                                 dataset: Dataset, tmp_path) -> None:
    a, b, c, d, e = artifacts.index.ids[:5]
    rows = [("u1", a, 1), ("u1", b, 2), ("u1", c, 3), ("u2", a, 1), ("u2", b, 2),
            ("u3", e, 1), ("u3", d, 2), ("u3", d, 3), ("u4", d, 1)]
    train = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(rating=4.0)
    catalogue = Catalogue.of(artifacts)
    cfg = settings.sources.markov.model_copy(update={"window": (2,)})
    source = Markov(catalogue, cfg)
    source.fit(train, None)
    col = {i: k for k, i in enumerate(artifacts.index.ids)}
    # After a: b twice (one step on), c once two steps on (weight 1/2); the earlier items
    # of the history do not count, only the last one does. Nothing followed c.
    got = source.scores([Query([(e, 5.0), (a, 5.0)]), Query([("not-an-item", 3.0)])])
    ties = source.scores([Query([(c, 5.0)])])[0]
    np.testing.assert_allclose(got[0] - ties, np.where(
        np.arange(len(ties)) == col[b], 2.0, np.where(np.arange(len(ties)) == col[c], 0.5, 0.0)),
        atol=1e-6)
    # Popularity only breaks ties, below any transition (d rated 3 times, e once).
    assert ties.max() < 0.5 and ties[col[d]] > ties[col[e]]
    assert np.isneginf(got[1]).all()  # no known item to follow: nothing to score
    source.save(tmp_path)
    back = Markov(catalogue, cfg)
    back.load(tmp_path)
    np.testing.assert_array_equal(back.scores([Query([(a, 5.0)])]),
                                  source.scores([Query([(a, 5.0)])]))
    # On real data the window is the grid's best on the tuning items, and the source is
    # then the one fit with that window alone.
    inter = dataset.interactions
    small = inter[inter.user_id.isin([str(u) for u in range(1, 200)])]
    tune = small.sort_values("timestamp").groupby("user_id").tail(1)
    fit_on = small.drop(tune.index)
    tuned = Markov(catalogue, settings.sources.markov)
    report = tuned.fit(fit_on, tune)
    tried = {int(k): v for k, v in report["tuning_ndcg@10"].items()}
    assert set(tried) == set(settings.sources.markov.window)
    assert tuned.window == max(tried, key=tried.get)
    alone = Markov(catalogue, settings.sources.markov.model_copy(
        update={"window": (tuned.window,)}))
    alone.fit(fit_on, tune)
    queries = [Query(h) for h in list(histories_of(fit_on).values())[:20]]
    np.testing.assert_array_equal(tuned.scores(queries), alone.scores(queries))


def test_kg_path_source_equals_the_graph_query(graph, ranker, artifacts) -> None:
    rows = graph.query("kg_path_candidates", user_id="1", max_entity_degree=200, limit=50)
    history = [(r["item_id"], r["rating"]) for r in reversed(graph.user_history("1", 1000))]
    scores = ranker.sources["kg_path"].scores([Query(history)])[0]
    col = {i: c for c, i in enumerate(artifacts.index.ids)}
    assert len(rows) == 50
    for r in rows:
        assert scores[col[r["item_id"]]] == pytest.approx(r["score"], rel=1e-4)


def test_a_source_that_cannot_fit_is_left_out_and_flagged(settings: Settings, artifacts,
                                                          dataset: Dataset,
                                                          monkeypatch) -> None:
    # EASE falls back to neighbours when too large (test_source_contract.py), so its
    # failure is staged here.
    def cannot_fit(self, *args, **kwargs):
        raise SourceUnavailable("ease: staged failure")
    monkeypatch.setattr(EASE, "fit", cannot_fit)
    tight = updated(settings.sources, {"enabled": ("ease", "popular")})
    sources, report = fit_sources(artifacts, tight, settings.retrieval,
                                  dataset.interactions, None)
    assert list(sources) == ["popular"] and "staged failure" in report["ease"]["unavailable"]
    retriever = Retriever(artifacts, sources, ["ease", "popular"],
                          settings.retrieval.model_copy(update={"per_source": 50}))
    r = retriever.retrieve([Query(_history(dataset, "42"))])[0]
    assert len(r.items) == settings.retrieval.budget
    ease = retriever.schema.indices(retriever.schema.columns(source="ease"))
    assert not r.features[:, ease].any()  # the missing source's features are zero


def test_the_ranker_slice_never_reaches_what_the_scorer_stacks(settings: Settings, artifacts,
                                                               dataset: Dataset) -> None:
    """The tuning sources, whose lists train the scorer, and the KG embeddings never saw
    the slice they are labelled by; the serving sources see all train data."""
    base = validation(artifacts.train, None, settings.ranker_slice)[0]
    fit_part, slice_part = ranker_slice(base, settings.ranker_slice)
    assert len(slice_part) > 0 and len(fit_part) + len(slice_part) == len(base)
    pairs = set(zip(slice_part.user_id, slice_part.item_id))
    assert not pairs & set(zip(fit_part.user_id, fit_part.item_id))
    folder = artifacts.folder("sources")
    args = (artifacts, settings.sources, settings.retrieval)
    tuning, _ = load_sources(*args, folder / "tuning")
    serving, _ = load_sources(*args, folder / "serving")
    histories = histories_of(fit_part)
    users = sorted(slice_part.user_id.unique())[:50]
    full = histories_of(artifacts.train)
    # EASE: the tuning model differs from one fit on train, and equals a refit on the
    # slice-free part.
    refit = EASE(Catalogue.of(artifacts), settings.sources.ease)
    refit.fit(fit_part, None, warm=tuning["ease"])
    queries = [Query(histories[u]) for u in users]
    np.testing.assert_allclose(tuning["ease"].scores(queries), refit.scores(queries), atol=1e-5)
    assert not np.allclose(serving["ease"].scores(queries), refit.scores(queries))
    # KG: no user -rated-> item triple of the slice is among the embedding's training data.
    triples = {tuple(t) for t in kg_triples(dataset, fit_part) if t[1] == RATED}
    assert not {(user_node(u), RATED, f"item:{i}") for u, i in pairs} & triples
    assert all(len(full[u]) > len(histories[u]) for u in users)


def test_the_blend_is_chosen_on_validation_items_nothing_else_learnt_from(
        settings: Settings, artifacts, dataset: Dataset, tmp_path) -> None:
    """The full build's validation items are each user's latest interaction: out of the
    ranker slices (the scorer's labels) and the KG embeddings, missed by the sources the
    blend checks, labelling the lists the blend is chosen on; its weight is the best of
    the grid on those lists. A split's are its own validation items."""
    base, held, kind = validation(artifacts.train, None, settings.ranker_slice)
    assert kind == "holdout"
    last = artifacts.train.sort_values(["timestamp", "item_id"]).groupby("user_id").tail(1)
    pairs = set(zip(held.user_id, held.item_id))
    assert pairs == set(zip(last.user_id, last.item_id))
    assert len(base) + len(held) == len(artifacts.train)
    for fold in range(settings.ranker_slice.folds):
        sliced = ranker_slice(base, settings.ranker_slice, fold)[1]
        assert len(sliced) and not pairs & set(zip(sliced.user_id, sliced.item_id))
    triples = {tuple(t) for t in kg_triples(dataset, unsliced(base, settings.ranker_slice))
               if t[1] == RATED}
    assert not {(user_node(u), RATED, f"item:{i}") for u, i in pairs} & triples
    folder = artifacts.folder("sources")
    args = (artifacts, settings.sources, settings.retrieval)
    checked, _ = load_sources(*args, folder / "holdout")
    serving, _ = load_sources(*args, folder / "serving")
    refit = EASE(Catalogue.of(artifacts), settings.sources.ease)
    refit.fit(base, None, warm=checked["ease"])
    queries = [Query(h) for h in list(histories_of(base).values())[:50]]
    np.testing.assert_allclose(checked["ease"].scores(queries), refit.scores(queries),
                               atol=1e-5)
    assert not np.allclose(serving["ease"].scores(queries), refit.scores(queries))
    blend = load_ranker(settings, artifacts).scorer.blend
    by_weight = blend.report["holdout_ndcg_by_weight"]
    assert blend.weight in BLEND_WEIGHTS and blend.source in blend.report["holdout_ndcg_sources"]
    assert by_weight[str(blend.weight)] == max(by_weight.values())
    assert blend.chosen_on == "holdout"
    # A blend chosen on other items (a split's validation items) is refit, not served.
    copy = tmp_path / "scorer"
    shutil.copytree(artifacts.folder("scorer"), copy)
    saved = json.loads((copy / "blend.json").read_text())
    (copy / "blend.json").write_text(json.dumps(saved | {"chosen_on": "validation"}))
    names = scorer_sources(settings)
    assert Scorer.load(copy, artifacts, settings.scorer, names).blend is None
    # One saved before short histories got weights of their own is refit too, and one
    # whose short weights were chosen by another rule (the shapes' mean) ...
    old = {k: v for k, v in saved.items()
           if k not in ("short_weights", "short_rule")} | {"short_weight": 4.0}
    (copy / "blend.json").write_text(json.dumps(old))
    assert Scorer.load(copy, artifacts, settings.scorer, names).blend is None
    (copy / "blend.json").write_text(json.dumps(saved | {"short_rule": None}))
    assert Scorer.load(copy, artifacts, settings.scorer, names).blend is None
    # ... and one that reads a source the scorer does not is refused.
    (copy / "blend.json").write_text(json.dumps(saved | {"short_weights": {"nope": 1.0}}))
    with pytest.raises(StaleArtifact, match="nope"):
        Scorer.load(copy, artifacts, settings.scorer, names)
    # A leave-last-out split's validation items are each user's next interaction; a
    # k-fold protocol tests a random share, so its random slices keep a random holdout.
    split = make_split(dataset, "loo")
    base, held, kind = validation(split.train, split.valid, settings.ranker_slice)
    assert base is split.train and held is split.valid and kind == "validation"
    kfold = make_split(dataset, "kfold0")
    random = settings.ranker_slice.model_copy(update={"kind": "random"})
    base, held, kind = validation(kfold.train, kfold.valid, random)
    assert kind == "holdout" and len(base) + len(held) == len(kfold.train)


def test_short_histories_get_their_own_blend(settings: Settings, artifacts) -> None:
    """The blend picks weights for short histories on short lists simulated from the long
    ones (never proposing what the user rated), and serves them to short histories only;
    without such lists one weight serves all."""
    ranker = load_ranker(settings, artifacts)
    scorer = ranker.scorer
    fit_part, held, kind = validation(artifacts.train, None, settings.ranker_slice)
    checked, _ = load_sources(artifacts, settings.sources, settings.retrieval,
                              artifacts.folder("sources") / "holdout")
    lists = blend_lists(artifacts, settings, scorer, checked, fit_part, held)
    short = short_lists(artifacts, settings, scorer, checked, fit_part, held)
    # MovieLens-100K users have 20+ ratings: two shapes of each, SHORT_KEEP items long.
    assert len(short.users) == 2 * len(lists.users)
    assert ((short.hist > 0).sum(1) == SHORT_KEEP).all()
    rated = histories_of(fit_part)
    item = {r: i for i, r in scorer.feat.row.items()}
    owner = short.owner.numpy()
    for k in range(0, len(short.users), 97):
        mine = {item[int(c)] for c in short.cand.numpy()[owner == k]}
        assert not mine & {i for i, _ in rated[short.users[k].split("/")[0]]}
    fit = lambda s: Blend.fit(scorer.model, lists, scorer.sources,  # noqa: E731
                              scorer.feat.trained, settings.scorer.blend_short_history, kind, s)
    served, refit = scorer.blend, fit(short)
    assert refit.short_weights == served.short_weights and len(refit.short_weights) == 2
    assert set(refit.short_weights.values()) <= set(BLEND_WEIGHTS)
    assert refit.short_platt == tuple(served.short_platt)
    # The chosen pair is the grid's best on the worse of the two shapes, the stacker's
    # logit plus each source's standardised score.
    rows = np.arange(len(short.cand))
    z = predict(scorer.model, short, rows)
    cols = {n: _standardised(short.side.numpy(), scorer.sources, n,
                             scorer.feat.trained[short.cand.numpy()], short.owner)
            for n in refit.short_weights}
    shape = np.array([short.users[o].split("/")[1] for o in owner])
    ndcg = lambda w, on=rows: round(list_ndcg(  # noqa: E731
        (z + sum(w[n] * cols[n] for n in w))[on], short, on), 4)
    worse = lambda w: min(ndcg(w, rows[shape == s]) for s in ("latest", "back"))  # noqa: E731
    assert refit.report["short"]["ndcg"] == ndcg(refit.short_weights)
    assert refit.report["short"]["stacker_ndcg"] == ndcg({n: 0.0 for n in cols})
    assert refit.report["short"]["ndcg_by_shape"] == {
        s: ndcg(refit.short_weights, rows[shape == s]) for s in ("back", "latest")}
    assert refit.short_rule == served.short_rule == SHORT_RULE
    a, b = cols
    assert all(worse({a: x, b: y}) <= worse(refit.short_weights)
               for x in BLEND_WEIGHTS[::2] for y in BLEND_WEIGHTS[::2])
    plain = fit(None)
    assert plain.short_weights is None and plain.short_platt is None
    assert (plain.weight, plain.platt) == (served.weight, tuple(served.platt))
    both = Blend(served.source, 0.0, (1.0, 0.0), {}, short_history=5,
                 short_weights={served.source: 8.0}, short_platt=(1.0, 0.0))
    feats = np.random.default_rng(0).normal(size=(5, lists.side.shape[1])).astype(np.float32)
    logits, trained = np.zeros(5, np.float32), np.ones(5, bool)
    assert np.allclose(both.apply(logits, feats, scorer.sources, trained, history_len=6), 0)
    short_out = both.apply(logits, feats, scorer.sources, trained, history_len=5)
    assert not np.allclose(short_out, 0)
    both.short_platt = (0.5, -1.0)  # served to short histories only
    assert np.allclose(both.apply(logits, feats, scorer.sources, trained, history_len=5),
                       0.5 * short_out - 1.0)
    assert np.allclose(both.apply(logits, feats, scorer.sources, trained, history_len=6), 0)


def test_ranker_slice_follows_the_protocol(settings: Settings, dataset: Dataset) -> None:
    split = make_split(dataset, "kfold0")
    latest = settings.ranker_slice.model_copy(update={"kind": "latest", "latest": 3})
    fit_part, slice_part = ranker_slice(split.train, latest)
    last = split.train.sort_values(["timestamp", "item_id"]).groupby("user_id").tail(3)
    assert set(zip(slice_part.user_id, slice_part.item_id)) == set(zip(last.user_id,
                                                                        last.item_id))
    random = settings.ranker_slice.model_copy(update={"kind": "random", "share": 0.2})
    a = ranker_slice(split.train, random)[1]
    b = ranker_slice(split.train, random)[1]
    assert a.equals(b) and 0.15 < len(a) / len(split.train) < 0.25
    assert a.groupby("user_id").size().min() >= 1


@pytest.mark.parametrize("kind", ["latest", "random"])
def test_cross_fitting_folds_hold_out_disjoint_slices(settings: Settings, dataset: Dataset,
                                                      kind: str) -> None:
    """Each fold's sources never see its slice (nor, for "latest", what came after it);
    the slices are disjoint, and the KG embeddings' part holds none of them."""
    train = make_split(dataset, "kfold0").train
    cfg = settings.ranker_slice.model_copy(update={"kind": kind, "folds": 3, "share": 0.1})
    pairs = lambda df: set(zip(df.user_id, df.item_id))  # noqa: E731
    order = train.sort_values(["timestamp", "item_id"], kind="stable")
    position = {p: n for n, p in enumerate(zip(order.user_id, order.item_id))}
    slices = []
    for fold in range(3):
        fit, held = ranker_slice(train, cfg, fold)
        assert len(held) and not pairs(fit) & pairs(held)
        assert not pairs(held) & set().union(*slices)
        if kind == "latest":  # the fit part ends before the slice starts, per user
            first = held.assign(p=[position[p] for p in zip(held.user_id, held.item_id)])
            last = fit.assign(p=[position[p] for p in zip(fit.user_id, fit.item_id)])
            gap = first.groupby("user_id").p.min() - last.groupby("user_id").p.max()
            assert (gap.dropna() > 0).all()
        else:
            assert len(fit) + len(held) == len(train)
        slices.append(pairs(held))
    kept = pairs(unsliced(train, cfg))
    assert not kept & set().union(*slices) and len(kept) + sum(map(len, slices)) == len(train)
    # Fold 0 is the single slice of `folds = 1` (every user has room for three).
    one = cfg.model_copy(update={"folds": 1})
    assert pairs(ranker_slice(train, one)[1]) == slices[0]
