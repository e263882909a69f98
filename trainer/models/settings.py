"""Each model's own settings: one class per family, named in the model's registry entry (trainer/models/registry.py).

A run holds its model's class as `config.own`. A setting of one class given to a model of another is refused
(trainer/config.py), so that nothing is silently ignored. The defaults are those a run recorded before its model
had the setting took (a preset sets the model's chosen values), so that every saved configuration loads as it
was trained. These classes import no torch: the command line lists and checks them without it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from trainer.settings import INT32_MAX, Settings, setting

Activation = Literal["sigmoid", "selu"]
GlobalKernelStart = Literal["identity", "paper"]
RowInput = Literal["binary", "stars"]

InputDropout = Annotated[
    float,
    setting(
        help="i-autorec, kernel-ae, mult-vae and mult-dae: while training, zero each observed input rating with this "
        "probability (a denoising autoencoder); the loss still scores every observed rating, and nothing is dropped "
        "when scoring.",
        ge=0,
        lt=1,
        allow_inf_nan=False,
    ),
]
KernelL2 = Annotated[
    float,
    setting(
        help="kernel-ae and glocal-k: the L2 penalty on their layers' kernel values K, in --l2's units (Sparse FC's "
        "lambda_s, doubled: the objective here is a sum of squared errors, not half of one).",
        ge=0,
        allow_inf_nan=False,
    ),
]
VaeInput = Annotated[
    RowInput,
    setting(
        help="mult-vae and mult-dae (whose presets take 'stars'): what a user's row holds, 1 for each rated movie "
        "('binary', Liang et al.'s) or the stars, which then also weigh each rated movie in the likelihood.",
    ),
]


class ModelSettings(Settings):
    """A model with no settings of its own (the baselines, popular)."""


class AutoencoderSettings(ModelSettings):
    """The seed autoencoder's family (autoencoder, notebook, deep-ae): user rows through hidden layers."""

    activation: Activation = setting("sigmoid", "The autoencoders' hidden activation.")
    dropout: float = setting(
        0.0, "Dropout on the autoencoders' code (the middle hidden layer) while training.", ge=0, lt=1
    )


class ItemAutoencoderSettings(AutoencoderSettings):
    """I-AutoRec: the family's settings, and input dropout."""

    input_dropout: InputDropout = 0.0


class KernelSettings(ModelSettings):
    """Sparse FC's kernelised autoencoder (kernel-ae)."""

    kernel_l2: KernelL2 = 0.0
    input_dropout: InputDropout = 0.0


class GlocalSettings(ModelSettings):
    """GLocal-K's fine-tuning of a kernel-ae run: its penalty, and the global kernel's."""

    kernel_l2: KernelL2 = 0.0
    dot_scale: float = setting(
        1.0, "glocal-k only: the scale of its global convolution kernel (GLocal-K's dot_scale).", gt=0
    )
    global_kernel_start: GlobalKernelStart = setting(
        "identity",
        "glocal-k only: 'identity' adds the identity to the global kernel and starts its learned part at 0, so "
        "the fine-tuning starts from the pre-trained model's predictions; 'paper' draws it as GLocal-K's code "
        "does, with no identity.",
    )


class BayesFmSettings(ModelSettings):
    """The Bayesian factorisation machine's features."""

    movie_features: bool = setting(
        False,
        "bayes-fm (whose preset turns it on): add each movie's release year (in ten bins) and genres, from the "
        "movies table, to its features (--no-movie-features: the ids and who rated what only).",
    )


class EaseSettings(ModelSettings):
    """EASE^R's input, and the rows it is fitted on."""

    ease_input: RowInput = setting(
        "binary",
        "ease (whose preset takes 'stars'): what its rows hold, 1 for each rated movie ('binary') or the stars.",
    )
    ease_session_gap: int = setting(
        0,
        "ease only: also fit on each rating session as a row of its own, a session being a user's ratings with no "
        "pause longer than this many seconds between two of them (the ratings' times; 300 ranked best on ml-1m's "
        "validation slices, at a longer fit); 0 fits on the users' rows alone.",
        ge=0,
        le=INT32_MAX,
    )


class MultDaeSettings(ModelSettings):
    """Mult-DAE (Liang et al. 2018): input dropout and what a row holds."""

    input_dropout: InputDropout = 0.0
    vae_input: VaeInput = "binary"


class MultVaeSettings(MultDaeSettings):
    """Mult-VAE: Mult-DAE's settings, and the annealing of its KL term."""

    kl_cap: float = setting(
        0.2,
        "mult-vae only: the most weight β its KL term takes, reached after --kl-anneal-epochs (Liang et al.'s cap).",
        ge=0,
    )
    kl_anneal_epochs: int = setting(
        50, "mult-vae only: the epochs over which β rises linearly from 0 to --kl-cap.", ge=1, le=INT32_MAX
    )
