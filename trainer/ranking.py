"""How good a model's recommendation lists are, measured as the field measures them (docs/ranking.md).

For a held-out part of the split (validation, to choose settings; test, for the figures): a movie is relevant
to a user when the user rated it at least RELEVANT_STARS there; the candidates are the movies the user has not
rated in the parts the model knows; the users evaluated are those with at least one relevant movie. Each
evaluated user's candidates are ranked by the model's scores, and the list's first LIST_LENGTH movies are kept
(written as predictions of kind 'test_top_n' or 'validation_top_n', so the metrics can be recomputed in SQL:
sql/examples/ranking_quality.sql). From the lists: precision, recall (hits over min(relevant, k)) and nDCG
(binary gain, log2 discount, ideal over min(relevant, k)) at 10 and 20, MRR at 10, the catalogue coverage of
the top 10s (distinct movies) and the mean popularity percentile of the movies in them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from trainer.sparse import Csr

RELEVANT_STARS = 4.0  # on half-star data too: 4.0 and up
LIST_LENGTH = 100
CUTOFFS = (10, 20)
MAIN_METRIC = "ndcg@10"  # what ranking models are selected on, and what serving recommendations compares


@dataclass
class RankedBlock:
    """A block of users' held-out lists: for each evaluated user (``rows``, rows of the block), the movies
    (columns) ranked first and their scores; ``kept`` is False past the end of a user's candidates."""

    rows: torch.Tensor
    movies: torch.Tensor  # evaluated users x LIST_LENGTH
    scores: torch.Tensor
    kept: torch.Tensor
    hits: torch.Tensor  # whether each listed movie is relevant


def rank_block(scores: torch.Tensor, known: Iterable[Csr], held: Csr, length: int = LIST_LENGTH) -> RankedBlock:
    """Rank a block of users' candidates: ``scores`` (users x movies, not modified) with the movies rated in the
    ``known`` blocks left out, for the users with a relevant rating in ``held`` (the held-out part's block)."""
    relevant = held.vals >= RELEVANT_STARS
    held_rows, held_cols = held.row_ids()[relevant], held.cols[relevant]
    rows = torch.unique(held_rows)
    candidates = scores.index_select(0, rows).clone()
    where = torch.full((scores.shape[0],), -1, dtype=torch.int64, device=scores.device)
    where[rows] = torch.arange(rows.numel(), device=scores.device)
    for block in known:
        block_rows = where[block.row_ids()]
        mine = block_rows >= 0
        candidates[block_rows[mine], block.cols[mine]] = -math.inf
    top, movies = candidates.topk(min(length, candidates.shape[1]), dim=1)
    kept = top != -math.inf
    is_relevant = torch.zeros_like(candidates, dtype=torch.bool)
    is_relevant[where[held_rows], held_cols] = True
    hits = is_relevant.gather(1, movies) & kept
    return RankedBlock(rows, movies, top, kept, hits)


@dataclass
class RankingTally:
    """The metrics' sums over the users evaluated so far, and the top 10s' movies; ``metrics()`` averages them."""

    popularity: torch.Tensor  # each movie's popularity percentile (0-100) among the known parts' ratings
    sums: dict[str, float] = field(default_factory=dict)
    n_users: int = 0
    n_listed: int = 0  # movies in the evaluated users' top 10s
    popularity_sum: float = 0.0
    covered: set[int] = field(default_factory=set)

    def add(self, block: RankedBlock, n_relevant: torch.Tensor) -> None:
        """Add a block's lists; ``n_relevant``: each evaluated user's number of relevant movies."""
        hits = block.hits.double()
        n_relevant = n_relevant.double()
        positions = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64, device=hits.device)
        discounts = 1 / torch.log2(positions + 1)
        ideal = torch.cumsum(discounts, 0)
        for k in CUTOFFS:
            found = hits[:, :k].sum(1)
            best = n_relevant.clamp(max=k)
            self._add(f"precision@{k}", found / k)
            self._add(f"recall@{k}", found / best)
            self._add(f"ndcg@{k}", (hits[:, :k] * discounts[:k]).sum(1) / ideal[best.long() - 1])
        self._add("mrr@10", (hits[:, :10] / positions[:10]).amax(1))
        top10 = block.movies[:, :10][block.kept[:, :10]]
        self.covered.update(top10.tolist())
        self.n_listed += top10.numel()
        self.popularity_sum += float(self.popularity[top10.cpu()].double().sum())
        self.n_users += hits.shape[0]

    def _add(self, name: str, per_user: torch.Tensor) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(per_user.sum())

    def metrics(self) -> dict[str, float]:
        """Means over the evaluated users (and the top 10s' movies), by metric name; empty with no user."""
        if not self.n_users:
            return {}
        found = {name: total / self.n_users for name, total in self.sums.items()}
        found["coverage@10"] = float(len(self.covered))
        found["popularity@10"] = self.popularity_sum / self.n_listed if self.n_listed else math.nan
        found["users"] = float(self.n_users)
        return found


def popularity_percentiles(counts: torch.Tensor) -> torch.Tensor:
    """Each movie's percentile (0-100) by its number of ratings: SQL's percent_rank() over every movie, x 100."""
    ordered = torch.sort(counts).values
    fewer = torch.searchsorted(ordered, counts, right=False)
    return fewer.double() * 100 / max(counts.numel() - 1, 1)


def relevant_counts(held: Csr, rows: torch.Tensor) -> torch.Tensor:
    """How many relevant held-out movies each of ``rows`` (rows of the block) has."""
    relevant = held.row_ids()[held.vals >= RELEVANT_STARS]
    return torch.bincount(relevant, minlength=held.n_rows)[rows]


def evaluate_block(tally: RankingTally, scores: torch.Tensor, known: Iterable[Csr], held: Csr) -> RankedBlock:
    """Rank a block of users' candidates (rank_block) and add their lists to ``tally``."""
    ranked = rank_block(scores, known, held)
    tally.add(ranked, relevant_counts(held, ranked.rows))
    return ranked
