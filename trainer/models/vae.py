"""The autoencoders of top-N recommendation, Mult-VAE and Mult-DAE (Liang, Krishnan, Hoffman and Jebara 2018,
"Variational Autoencoders for Collaborative Filtering"), models that rank and predict no ratings.

A user's row of who-rated-what (or of the stars, `--vae-input stars`, which their presets take), L2-normalised,
with half of it dropped while training (input dropout), goes through a tanh layer to a code (`--hidden`), and
back through a tanh layer to a softmax over every movie: the loss is the multinomial log-likelihood of the movies
the user rated, each counted once (binary) or as many times as its stars. Stars in and stars counted rank better
on validation than the paper's binary rows, and a 200-100 network at Adam 3e-3 as well as its 600-200 at 1e-3, in
a fraction of the epochs (docs/ranking.md). Mult-VAE's code is a Gaussian
(its mean and variance are encoded, a sample is decoded while training, the mean when scoring) with a KL term
weighted by β, which rises linearly from 0 to `--kl-cap` over `--kl-anneal-epochs` epochs; Mult-DAE's code is
the layer itself, with an L2 penalty (`--l2`) instead. Trained with Adam, user batches dealt anew each epoch;
the epoch whose lists rank best on the validation slice (nDCG@10, trainer/ranking.py) is kept, like ease's λ.
They fold in: `trainer score` ranks for any user from her row alone, without retraining.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainer.data import user_rows_with_validation
from trainer.errors import TrainerError
from trainer.models.base import FitInputs, Fitted, build_model
from trainer.models.ease import RankingModel, validation_ranking
from trainer.models.settings import MultDaeSettings, MultVaeSettings
from trainer.optim import Adam
from trainer.ranking import MAIN_METRIC
from trainer.selection import Best
from trainer.sparse import Csr, sparse_linear

if TYPE_CHECKING:
    from trainer.config import TrainConfig


class MultVAE(RankingModel):
    """n_movies -> hidden[0] (tanh) -> code (hidden[-1]; a Gaussian's mean and log-variance when variational) ->
    hidden[0] (tanh) -> n_movies logits."""

    def __init__(
        self, n_movies: int, hidden: tuple[int, ...], variational: bool, input_dropout: float, stars: bool = False
    ) -> None:
        super().__init__(n_movies, stars)
        width, code = hidden[0], hidden[-1]
        self.variational, self.input_dropout = variational, input_dropout
        self.encoder = nn.Linear(n_movies, width)
        self.code = nn.Linear(width, 2 * code if variational else code)
        self.expand, self.output = nn.Linear(code, width), nn.Linear(width, n_movies)
        for layer in self.layers():  # as the paper's code draws them
            nn.init.xavier_uniform_(layer.weight)
            if not layer.bias.is_meta:  # only measured there: nothing to draw (train._fits_in_memory says why)
                nn.init.normal_(layer.bias, std=0.001)

    def layers(self) -> tuple[nn.Linear, ...]:
        return self.encoder, self.code, self.expand, self.output

    def decoder(self, code: torch.Tensor) -> torch.Tensor:
        return self.output(torch.tanh(self.expand(code)))

    def encode(self, inputs: torch.Tensor | Csr) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The code's mean, and its log-variance (None for Mult-DAE), from users' rows: dense, or as their ratings
        (a Csr), whose first layer is then a sparse product over the rated movies alone."""
        if isinstance(inputs, Csr):
            weights = self.weights(inputs)
            rows = inputs.row_ids()
            lengths = torch.zeros(inputs.n_rows, dtype=weights.dtype).index_add_(0, rows, weights.square()).sqrt()
            values = weights / lengths.clamp(min=1e-12)[rows]  # each row of unit length
            if self.training and self.input_dropout:
                values = nn.functional.dropout(values, self.input_dropout)
            first = sparse_linear(inputs.block().with_vals(values), self.encoder.weight, self.encoder.bias)
        else:
            normalised = nn.functional.normalize(inputs if self.stars else (inputs > 0).to(inputs.dtype), dim=1)
            if self.training and self.input_dropout:
                normalised = nn.functional.dropout(normalised, self.input_dropout)
            first = self.encoder(normalised)
        hidden = self.code(torch.tanh(first))
        if not self.variational:
            return torch.tanh(hidden), None
        mean, log_variance = hidden.chunk(2, dim=1)
        return mean, log_variance

    def weights(self, rows: Csr) -> torch.Tensor:
        """What each rating of the rows counts for, in the input and the likelihood: its stars, or 1."""
        return rows.vals if self.stars else torch.ones_like(rows.vals)

    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        """The logits over every movie (their softmax's order is the list's)."""
        return self.decoder(self.encode(inputs)[0])

    def score_rows(self, rows: Csr) -> torch.Tensor:
        return self.decoder(self.encode(rows)[0])

    def loss(self, rows: Csr, beta: float) -> torch.Tensor:
        """The batch's mean negative multinomial log-likelihood of the movies its users rated (each weighted as in
        the input), plus β x KL."""
        mean, log_variance = self.encode(rows)
        code = mean
        if log_variance is not None:
            code = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        log_softmax = nn.functional.log_softmax(self.decoder(code), dim=1)
        likelihood = -(log_softmax[rows.row_ids(), rows.cols] * self.weights(rows)).sum() / rows.n_rows
        if log_variance is None:
            return likelihood
        kl = 0.5 * (log_variance.exp() + mean.square() - 1 - log_variance).sum(1).mean()
        return likelihood + beta * kl

    def regularised(self) -> list[torch.Tensor]:
        return [layer.weight for layer in self.layers()]


def mult_vae(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> MultVAE:
    own = config.own_as(MultVaeSettings)
    return MultVAE(n_movies, config.hidden, True, own.input_dropout, stars=own.vae_input == "stars")


def mult_dae(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> MultVAE:
    own = config.own_as(MultDaeSettings)
    return MultVAE(n_movies, config.hidden, False, own.input_dropout, stars=own.vae_input == "stars")


def _beta(config: TrainConfig, epoch: int) -> float:
    """The KL term's weight at ``epoch``: rising linearly to its cap (Liang et al.'s annealing)."""
    own = config.own_as(MultVaeSettings)
    return own.kl_cap * min(1.0, epoch / own.kl_anneal_epochs)


def fit(inputs: FitInputs) -> Fitted:
    """Train `mult-vae` or `mult-dae` on ``fit_parts`` for up to --epochs, keeping the epoch whose lists rank best
    on the validation slice (stopping --patience epochs after it): the model, its curve, the seconds, the selection."""
    con, config, info, fit_parts, mean, log, on_epoch = inputs  # (a FitInputs: base.py)
    started = time.perf_counter()
    model = build_model(config, info.n_users, info.n_movies, mean)
    assert isinstance(model, MultVAE)
    _, train, validation = user_rows_with_validation(con, config.split, fit_parts, config.validation, info.n_movies)
    # trainer.optim's Adam, torch.optim's update step for step: torch.optim's first use imports TorchDynamo
    optimiser = Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    l2 = config.l2 / 2 / max(train.n_rows, 1)  # --l2 in the units of a sum over users, as the other models'
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    best, kept, step = Best(), None, 0
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        beta = _beta(config, epoch) if model.variational else 0.0
        total, batches = 0.0, 0
        for rows in torch.randperm(train.n_rows, generator=generator).split(config.batch_size):
            loss = model.loss(train.select(rows), beta)
            if l2:
                loss = loss + l2 * sum(weight.square().sum() for weight in model.regularised())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, batches, step = total + float(loss.detach()), batches + 1, step + 1
        if not math.isfinite(total):
            raise TrainerError(
                f"training diverged at epoch {epoch}: the loss is not finite; try a lower "
                f"--learning-rate (this run's: {config.learning_rate:g})"
            )
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train_rmse": None,
            "validation_rmse": None,
            "loss": total / batches,
            "settings": {"epochs": epoch},
        }
        if validation is not None and config.scores_validation_at(epoch):
            model.eval()
            with torch.no_grad():
                metrics[MAIN_METRIC] = validation_ranking(model, train, validation)[MAIN_METRIC]
            if best.epoch is None or metrics[MAIN_METRIC] > history[best.epoch - 1][MAIN_METRIC]:
                best.epoch = epoch
                kept = {name: t.detach().clone() for name, t in model.state_dict().items()}
        metrics["seconds"] = time.perf_counter() - epoch_start
        history.append(metrics)
        on_epoch(metrics)
        if best.epoch is not None and config.patience and epoch - best.epoch >= config.patience:
            break
    if kept is not None and config.select_best:
        model.load_state_dict(kept)
        log(
            f"{config.model}: epoch {best.epoch} chosen (validation {MAIN_METRIC} "
            f"{history[(best.epoch or 1) - 1][MAIN_METRIC]:.4f}) of {len(history)}"
        )
    model.eval()
    return model, history, time.perf_counter() - started, best
