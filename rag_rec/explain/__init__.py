"""Explanations a user can trust: evidence, templates, a claim checker, and the LLM on top.

In (per request): the user, their rated history [(item, rating)], the recommended items,
each item's KG paths to the history (`GraphClient.candidate_facts`) and, per item, the
scorer's attention over the history. Out: one `Explanation` per item (`explain_many`).

One module per step, each importing only the ones above it:

1. `phrasing`: facts in words; the phrases are data (`phrasing.toml`), with a readable
   default for a relation nobody phrased. It also words `Fact.plain` / `Evidence.plain`.
2. `evidence`: `select_evidence`, the usable paths ranked by relation weight ×
   specificity × rating × the scorer's attention (never a film rated 1-2).
3. `claims`: `check_claims`, every name, number and relation word in a text backed by a
   cited fact or the user's own rated films.
4. `templates`: `template_options`, checked sentences rendered by code: the floor, so
   every text rag_rec ships can be one of them.
5. `choose`: `explain_many`, the LLM picking among the templates (`choose` mode) or
   writing text the claim checker must pass (`free` mode); the template when it fails.
"""

from rag_rec.explain.choose import (
    FREE_EVIDENCE,
    RETRY_TEMPERATURE,
    Mode,
    explain_many,
    explain_mode,
)
from rag_rec.explain.claims import check_claims
from rag_rec.explain.evidence import (
    RELATION_WEIGHT,
    SPECIFIC_DEGREE,
    liked,
    rating_factor,
    relation_weight,
    select_evidence,
)
from rag_rec.explain.phrasing import (
    GENRE_WORDS,
    attribute,
    display_entity,
    display_title,
    evidence_in_words,
    fact_in_words,
    relation_phrasing,
)
from rag_rec.explain.templates import (
    BROAD_DEGREE,
    MAX_OPTIONS,
    NO_EVIDENCE,
    Option,
    template_options,
)

__all__ = [
    "BROAD_DEGREE", "FREE_EVIDENCE", "GENRE_WORDS", "MAX_OPTIONS", "NO_EVIDENCE",
    "RELATION_WEIGHT", "RETRY_TEMPERATURE", "SPECIFIC_DEGREE", "Mode", "Option", "attribute",
    "check_claims", "display_entity", "display_title", "evidence_in_words", "explain_many",
    "explain_mode", "fact_in_words", "liked", "rating_factor", "relation_phrasing",
    "relation_weight", "select_evidence", "template_options",
]
