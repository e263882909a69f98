"""Every model `trainer run --model` can train: one entry per model, with its builder, its preset and its checks.

Adding a model is one module in trainer/models/ (its network and a builder function) and one `ModelSpec` in
`REGISTRY` below. This module imports no torch: the command line lists and checks models without it; the
builder's module is imported only when a run builds the model (trainer/models/base.py `build_model`).

A run's settings are resolved as: the fields' defaults < the model's preset < a config file < flags
(trainer/config.py). Each preset's values were chosen on validation slices (docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from trainer.models.settings import (
    AutoencoderSettings,
    BayesFmSettings,
    EaseSettings,
    GlocalSettings,
    ItemAutoencoderSettings,
    KernelSettings,
    ModelSettings,
    MultDaeSettings,
    MultVaeSettings,
)

if TYPE_CHECKING:
    from trainer.config import TrainConfig

# bayes-fm averages its Gibbs samples after this many sweeps (myFM's default too).
GIBBS_BURN_IN = 5


@dataclass(frozen=True)
class ModelSpec:
    """One model: its name, what --help says of it, how it is built, its preset and its own checks."""

    name: str
    summary: str  # one sentence for --help
    builder: str  # "package.module:function"; function(config, n_users, n_movies, mean) returns the network
    # A model fitted outside the training loop (sampled, or in closed form): "package.module:function", called as
    # function(con, config, info, fit_parts, mean, log, on_epoch) -> (model, history, seconds, selection).
    fit: str | None = None
    preset: Mapping[str, Any] = field(default_factory=dict)  # settings that override the fields' defaults
    # The model's own settings (config.own); given to a model of another class they are refused.
    settings: type[ModelSettings] = ModelSettings
    # Why a resolved configuration cannot train this model (None: it can), beyond the settings' own bounds.
    check: Callable[[TrainConfig], str | None] = lambda config: None

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", MappingProxyType(dict(self.preset)))


def _gibbs_only(config: TrainConfig) -> str | None:
    if config.optimizer != "gibbs":
        return f"bayes-fm is sampled (--optimizer gibbs): it cannot take --optimizer {config.optimizer}"
    if config.init_from or config.lr_drops:
        return "bayes-fm starts from its priors and has no learning rate: it takes neither --init-from nor --lr-drops"
    if config.epochs <= GIBBS_BURN_IN:
        return (
            f"bayes-fm averages the samples after its first {GIBBS_BURN_IN} sweeps: --epochs must be more than "
            f"{GIBBS_BURN_IN}, not {config.epochs}"
        )
    return None


def _closed_form(config: TrainConfig) -> str | None:
    """The models with a fit of their own (popular, ease, mult-vae, mult-dae) run in one process, from scratch."""
    if config.init_from or config.optimizer == "gibbs":
        return f"{config.model} is fitted in closed form: it takes neither --init-from nor --optimizer gibbs"
    return None


def _stepped(config: TrainConfig) -> str | None:
    """The models trained by the loop: gibbs samples bayes-fm alone; L-BFGS cannot work with input dropout."""
    if config.optimizer == "gibbs":
        return f"gibbs samples bayes-fm alone; a model {config.model} cannot take --optimizer gibbs"
    if getattr(config.own, "input_dropout", 0.0) and config.optimizer == "lbfgs":  # the models that drop inputs
        return (
            "input_dropout drops other ratings at every evaluation of the loss, which L-BFGS's line search "
            "cannot work with: use another --optimizer, or --input-dropout 0"
        )
    return None


# I-AutoRec: movie rows, n_users -> 500 sigmoid -> n_users identity, L2 on the weights. Adam instead of the paper's
# L-BFGS/Rprop, then one tenth of the rate once validation stalls; chosen on ml-1m random's validation slice
# (docs/training.md; ml-100k's in trainer/protocols.py). Input dropout 0.2 with l2 250 validated better than
# l2 300 without on two splits (docs/training.md).
_I_AUTOREC = {
    "hidden": (500,),
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "l2": 250.0,
    "input_dropout": 0.2,
    "batch_size": 256,
    "epochs": 200,
    "eval_every": 1,
    "patience": 6,
    "lr_drops": 1,
    "fixed_batches": False,
}

# Sparse FC's kernelised autoencoder (item rows, 500-500 sigmoid, W ⊙ K layers), trained as its paper does:
# full-batch L-BFGS (one batch of every movie), 10 iterations an epoch, so that patience and the selected epoch
# count in units of 10 iterations. Penalties and optimiser chosen on ml-1m random's validation slice, where L-BFGS
# beats Adam; on ml-100k Adam does better (trainer/protocols.py, docs/training.md). kernel_l2 0.02 validated
# better than 0.01 on all five splits (docs/accuracy.md).
_KERNEL_AE = {
    "hidden": (500, 500),
    "optimizer": "lbfgs",
    "learning_rate": 1.0,
    "lbfgs_iterations": 10,
    "weight_decay": 0.0,
    "l2": 120.0,
    "kernel_l2": 0.02,
    "batch_size": 1_000_000,
    "epochs": 60,
    "eval_every": 1,
    "patience": 5,
    "lr_drops": 0,
}

_BASELINE = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "batch_size": 100_000,
    "epochs": 200,
    "eval_every": 1,
    "patience": 10,
    "lr_drops": 0,
}

_SPECS = [
    ModelSpec(
        "autoencoder",
        "the seed design (user rows, 20-10-20 sigmoid) tuned for batched training",
        "trainer.models.autoencoders:user_autoencoder",
        settings=AutoencoderSettings,
        check=_stepped,
    ),
    # The original notebook exactly: one user per optimiser step in user order, RMSprop(lr=0.01, weight_decay=0.5),
    # gradients never zeroed, MSELoss over all movies, unclipped predictions, trained on the whole training side,
    # and the first line of each of its files never read.
    ModelSpec(
        "notebook",
        "the original notebook exactly (one user per step, its optimiser and its quirks)",
        "trainer.models.autoencoders:user_autoencoder",
        preset={
            "validation": False,
            "learning_rate": 0.01,
            "weight_decay": 0.5,
            "batch_size": 1,
            "shuffle": False,
            "loss": "all_movies",
            "clip": False,
            "cold_start_fallback": False,
            "accumulate_gradients": True,
            "drop_first_rating": True,
        },
        settings=AutoencoderSettings,
        check=_stepped,
    ),
    ModelSpec(
        "i-autorec",
        "the item-based autoencoder of Sedhain et al. 2015 (movie rows)",
        "trainer.models.autoencoders:i_autorec",
        preset=_I_AUTOREC,
        settings=ItemAutoencoderSettings,
        check=_stepped,
    ),
    # DeepRecommender's design (user rows): n-512-512-1024-512-512-n, SELU, dropout 0.8 on the code, dense
    # re-feeding. Adam instead of its SGD with momentum (this trainer's SGD has no momentum).
    ModelSpec(
        "deep-ae",
        "DeepRecommender's design (SELU, dropout on the code, dense re-feeding)",
        "trainer.models.autoencoders:user_autoencoder",
        preset={
            "hidden": (512, 512, 1024, 512, 512),
            "activation": "selu",
            "dropout": 0.8,
            "refeed": True,
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "weight_decay": 0.0,
            "l2": 0.0,
            "batch_size": 128,
            "epochs": 100,
            "eval_every": 1,
            "patience": 10,
            "lr_drops": 0,
            "fixed_batches": False,
        },
        settings=AutoencoderSettings,
        check=_stepped,
    ),
    ModelSpec(
        "kernel-ae",
        "Sparse FC's kernelised autoencoder (movie rows, full-batch L-BFGS)",
        "trainer.models.kernel:kernel_ae",
        preset=_KERNEL_AE,
        settings=KernelSettings,
        check=_stepped,
    ),
    # GLocal-K's fine-tuning stage, started from a kernel-ae run (--init-from), with that run's penalties and its
    # full-batch L-BFGS, the epoch chosen on validation; dot_scale as the paper's ml-1m setting (1 on ml-100k,
    # trainer/protocols.py).
    ModelSpec(
        "glocal-k",
        "GLocal-K's global convolution, fine-tuning a kernel-ae run (--init-from)",
        "trainer.models.kernel:glocal_k",
        preset={**_KERNEL_AE, "dot_scale": 0.5, "epochs": 30},
        settings=GlocalSettings,
        check=_stepped,
    ),
    # A Bayesian factorisation machine with "who rated what" and movie features (trainer/models/bayes_fm.py): Gibbs
    # sampling, one sweep an epoch, scored as the mean of the samples after the first GIBBS_BURN_IN sweeps; hidden is
    # its rank. Its priors are sampled too, so it has no penalty to set. Rank 20 on ml-1m and its movie features were
    # chosen on validation (docs/training.md). The features are off for runs recorded before they existed (a refit
    # of one keeps to its parent's features).
    ModelSpec(
        "bayes-fm",
        "a Bayesian factorisation machine with who-rated-what and movie features (Gibbs sampling, on the CPU)",
        "trainer.models.factorisation:bayes_fm",
        fit="trainer.models.bayes_fm:sample",
        preset={
            "hidden": (20,),
            "optimizer": "gibbs",
            "epochs": 200,
            "eval_every": 1,
            "patience": 0,
            "lr_drops": 0,
            "movie_features": True,
        },
        settings=BayesFmSettings,
        check=_gibbs_only,
    ),
    # Baselines. The global mean starts at its own value (the training mean): one epoch of SGD leaves it.
    ModelSpec(
        "global-mean",
        "a baseline: the training ratings' mean",
        "trainer.models.factorisation:global_mean",
        preset={"optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 0.0, "epochs": 1, "eval_every": 1},
        check=_stepped,
    ),
    ModelSpec(
        "biases",
        "a baseline: damped user and movie biases",
        "trainer.models.factorisation:biases",
        preset={**_BASELINE, "learning_rate": 0.05, "l2": 5.0},
        check=_stepped,
    ),
    ModelSpec(
        "mf",
        "a baseline: biased matrix factorisation (--hidden: its number of factors)",
        "trainer.models.factorisation:mf",
        preset={**_BASELINE, "hidden": (50,), "learning_rate": 0.03, "l2": 30.0, "epochs": 300},
        check=_stepped,
    ),
]

# Models built for ranking (trainer/models/ease.py): no rating predictions, judged on their lists alone.
_SPECS += [
    ModelSpec(
        "popular",
        "a ranking baseline: the most rated movies the user has not seen",
        "trainer.models.ease:popular",
        fit="trainer.models.ease:fit",
        preset={"epochs": 1},
        check=_closed_form,
    ),
    # λ searched from --l2 on validation nDCG@10 (--epochs: the most λ tried). ml-1m random chose 12000 on every
    # split seed tried, so it starts there: three fits on the larger data set, more on the smaller (docs/ranking.md).
    ModelSpec(
        "ease",
        "EASE^R, a closed-form item-item autoencoder for ranking (Steck 2019); --l2 is where its search for λ starts",
        "trainer.models.ease:ease",
        fit="trainer.models.ease:fit",
        preset={"l2": 12000.0, "ease_input": "stars", "epochs": 6},
        settings=EaseSettings,
        check=_closed_form,
    ),
]

# The autoencoders of top-N recommendation (trainer/models/vae.py): Liang et al. 2018's input dropout 0.5 and 500
# users a batch; stars in, and a narrower network at a higher learning rate than their 600-200 at Adam 1e-3, which
# ranked as well on the validation slices in a fraction of the epochs (docs/ranking.md). The epoch is chosen on
# validation nDCG@10, scored every 5.
_MULT = {
    "hidden": (200, 100),
    "input_dropout": 0.5,
    "learning_rate": 3e-3,
    "weight_decay": 0.0,
    "batch_size": 500,
    "epochs": 100,
    "eval_every": 5,
    "patience": 20,
    "vae_input": "stars",
}
_SPECS += [
    ModelSpec(
        "mult-vae",
        "Mult-VAE (Liang et al. 2018), a variational autoencoder for ranking: a softmax over every movie",
        "trainer.models.vae:mult_vae",
        fit="trainer.models.vae:fit",
        preset={**_MULT, "l2": 0.0},
        settings=MultVaeSettings,
        check=_closed_form,
    ),
    ModelSpec(
        "mult-dae",
        "Mult-DAE (Liang et al. 2018), its denoising autoencoder twin: no KL term, an L2 penalty instead",
        "trainer.models.vae:mult_dae",
        fit="trainer.models.vae:fit",
        preset={**_MULT, "l2": 50.0},
        settings=MultDaeSettings,
        check=_closed_form,
    ),
]

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
