import json
from pathlib import Path

import pytest

from trainer.config import TrainConfig, from_dict, resolve
from trainer.errors import TrainerError
from trainer.models.registry import REGISTRY
from trainer.models.settings import MultVaeSettings


def test_defaults_are_the_seed_model() -> None:
    config = resolve({})
    assert (config.model, config.hidden, config.optimizer, config.epochs, config.split) == (
        "autoencoder",
        (20, 10, 20),
        "rmsprop",
        200,
        "random",
    )


def test_notebook_preset_carries_the_original_settings() -> None:
    config = resolve({"model": "notebook"})
    assert (config.learning_rate, config.weight_decay, config.batch_size) == (0.01, 0.5, 1)
    assert config.accumulate_gradients and not config.shuffle and not config.clip and not config.validation


def test_flags_override_the_file_which_overrides_the_preset(tmp_path) -> None:
    file = tmp_path / "run.toml"
    file.write_text('model = "notebook"\nepochs = 7\nlearning_rate = 0.5\nhidden = [8, 4, 8]\n')
    config = resolve({"learning_rate": 0.1, "seed": None}, file)
    assert config.model == "notebook" and config.weight_decay == REGISTRY["notebook"].preset["weight_decay"]
    assert config.epochs == 7 and config.learning_rate == 0.1 and config.hidden == (8, 4, 8)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": "nope"}, "unknown model"),
        ({"optimizer": "rprop"}, "optimizer must be one of"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number, not nan"),
        ({"dropout": 1.0}, "dropout must be below 1, not 1.0"),
        ({"device": "tpu"}, "device must be one of"),
        ({"epochs": 0}, "epochs must be at least 1, not 0"),
        ({"weight_decay": -1.0}, "weight_decay must be at least 0, not -1.0"),
        ({"threads": -1}, "threads must be at least 0, not -1"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(overrides, message) -> None:
    with pytest.raises(TrainerError, match=message):
        resolve(overrides)


def test_config_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = \n")
    with pytest.raises(TrainerError, match="bad.toml: not valid TOML"):
        resolve({}, bad)
    bad.write_text("epoch = 3\n")
    with pytest.raises(TrainerError, match="unknown setting"):
        resolve({}, bad)
    with pytest.raises(TrainerError, match="no such config file"):
        resolve({}, tmp_path / "missing.toml")


def test_round_trip_through_a_checkpoint_dict() -> None:
    config = resolve({"model": "notebook", "epochs": 3})
    assert from_dict(config.to_dict()) == config
    assert from_dict({**TrainConfig().to_dict(), "hidden": [4, 2]}).hidden == (4, 2)
    vae = resolve({"model": "mult-vae", "kl_cap": 0.3})
    assert from_dict(vae.to_dict()) == vae and vae.own_as(MultVaeSettings).kl_cap == 0.3


def test_every_setting_is_an_option_of_trainer_run_or_deliberately_internal() -> None:
    """The options are generated from TrainConfig: each field is one (with the dataclass's default shown, and
    a choice's values), or says why it is not."""
    from typing import get_args

    import typer

    from trainer.cli import app
    from trainer.config import settings

    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    options = {param.name: param for param in command.params}
    assert set(options) - set(settings()) == {"config_file", "resume"}
    for name, spec in settings().items():
        default = spec.default
        if spec.internal:
            assert name not in options and len(spec.internal) > 20, name  # a reason, not a flag
            continue
        option = options[name]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        # the dataclass's default, shown as [default: ...]; left alone, the command gets None and the preset applies
        # (tests/trainer/test_cli.py: test_defaults_shown_in_help_leave_the_preset_and_config_file_in_charge)
        assert option.default == shown and option.show_default == (default is not None), name
        assert option.help == spec.help or name == "model", name  # the models are listed after the options
        assert option.help.endswith("."), name
        if spec.choices:  # a Literal of exactly the choices: listed in --help, a typo exits 2
            assert get_args(option.type_descriptor.annotation) == spec.choices, name


def test_config_file_values_of_the_wrong_type_are_refused_naming_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    for text, message in [
        ('epochs = "3"\n', "epochs = '3' is not a whole number"),
        ('hidden = [8, "x"]\n', r"hidden = \[8, 'x'\] is not a list of whole numbers"),
        ("validation = 1\n", "validation = 1 is not true or false"),
    ]:
        bad.write_text(text)
        with pytest.raises(TrainerError, match=f"bad.toml: {message}"):
            resolve({}, bad)


SAVED = Path(__file__).parent / "data" / "configs_saved_by_779a5ea.json"
# Settings added since that revision: its runs do not hold them, and load with the value they were trained with.
ADDED_SINCE = {"ease_session_gap": 0}


@pytest.mark.parametrize("model", sorted(REGISTRY))
def test_a_configuration_saved_by_the_flat_revision_loads_as_it_was_trained(model) -> None:
    """Every model's preset as the revision before the settings groups saved it (one flat dataclass, every model's
    settings in each run): it loads as the same run, and saves back to the same values, less other models'."""
    saved = json.loads(SAVED.read_text())[model]
    config = from_dict(saved)
    trained_with = {name: value for name, value in ADDED_SINCE.items() if name in type(config.own).model_fields}
    assert config == resolve({"model": model, **trained_with})
    assert (
        config.to_dict()
        == {name: tuple(v) if isinstance(v, list) else v for name, v in saved.items() if name in config.to_dict()}
        | trained_with
    )
    others = set(saved) - set(config.to_dict())
    assert others == {name for spec in REGISTRY.values() for name in spec.settings.model_fields} - set(
        type(config.own).model_fields
    ) - set(ADDED_SINCE)


def test_setting_names_are_unique_across_the_groups() -> None:
    """A run's settings are saved as one flat table: no two groups may hold a setting of the same name, unless it
    is one definition shared (input_dropout, kernel_l2, vae_input)."""
    from trainer.config import MachineSettings, settings

    run = set(TrainConfig.model_fields) - {"own", "machine"}
    machine = set(MachineSettings.model_fields)
    own = {name for spec in REGISTRY.values() for name in spec.settings.model_fields}
    assert not (run & machine) and not (run & own) and not (machine & own)
    for name in own:
        fields = {
            spec.settings.model_fields[name].__repr__()
            for spec in REGISTRY.values()
            if name in spec.settings.model_fields
        }
        assert len(fields) == 1, name  # one definition, whichever class holds it
    assert set(settings()) == run | machine | own


def test_a_model_takes_only_its_own_settings_class() -> None:
    from trainer.models.settings import EaseSettings

    with pytest.raises(TrainerError, match="--ease-input is read by ease only, not by mult-vae"):
        resolve({"model": "mult-vae", "ease_input": "stars"})
    with pytest.raises(TypeError, match="not a EaseSettings"):
        resolve({"model": "mult-vae"}).own_as(EaseSettings)
    with pytest.raises(ValueError, match="own settings are a MultVaeSettings"):
        TrainConfig(model="mult-vae", own=EaseSettings())
