"""params.yaml -> TrainConfig, and the CLI's one-line errors."""

import pytest
import yaml
from click.testing import CliRunner
from dataset_fixtures import make_fake_dataset

from dcign.cli import main
from dcign.config import (
    ConfigError,
    ModelConfig,
    TrainConfig,
    config_from_params,
    default_params,
    load_config,
    with_resolution,
)


def write_params(path, **train):
    params = default_params()
    params["train"].update(train)
    path.write_text(yaml.safe_dump(params))
    return path


def test_defaults_round_trip(tmp_path):
    cfg = load_config(write_params(tmp_path / "params.yaml"))
    # The data decides the resolution; the reader validates with the smallest that fits the poolings.
    assert cfg.model == ModelConfig(resolution=2 ** len(ModelConfig().filters))
    assert cfg == TrainConfig(model=cfg.model)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    other = load_config(write_params(tmp_path / "other.yaml", latent=9, steps=5))
    assert (other.model.latent, other.steps) == (9, 5) and other != cfg


def test_overrides():
    cfg = config_from_params(default_params(), ("steps=7", "train.filters=[8, 4, 2]", "seed=3", "lr=1"))
    assert (cfg.steps, cfg.model.filters, cfg.seed, cfg.lr) == (7, (8, 4, 2), 3, 1.0)
    with pytest.raises(ConfigError, match="--set 'nope=1'"):
        config_from_params(default_params(), ("nope=1",))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": -3}, "params.yaml: train.steps must be a positive integer, got -3"),
        ({"steps": 2.5}, "train.steps must be a positive integer, got 2.5"),
        ({"kl_clamped": "yes"}, "train.kl_clamped must be true or false"),
        ({"clamp_grad": "sum"}, "train.clamp_grad must be one of replace, mean, got 'sum'"),
        ({"clamp_to": "last"}, "train.clamp_to must be one of mean, first, got 'last'"),
        ({"own_recon": -1}, "train.own_recon must be a non-negative number, got -1"),
        ({"decoder_steps": 1.5}, "train.decoder_steps must be a non-negative integer, got 1.5"),
        ({"decoder_steps": 3000}, "train.decoder_steps (3000) must be below steps (3000): they are the last of them"),
        ({"decoder_steps": 10, "decoder_swap": 1.5}, "train.decoder_swap must be a number from 0 to 1, got 1.5"),
        ({"decoder_swap": 0.5}, "train.decoder_swap applies to the decoder phase: set decoder_steps above 0 too"),
        ({"edit_recon": -0.5}, "train.edit_recon must be a non-negative number, got -0.5"),
        ({"edit_recon": 1, "edit_share": 2}, "train.edit_share must be a number from 0 to 1, got 2"),
        (
            {"method": "gan"},
            "train.method must be one of dcign, vae, beta_vae, beta_tcvae, factor_vae, ada_gvae, got 'gan'",
        ),
        ({"entangled": True}, "unknown parameter train.entangled"),
        ({"norm": "batch"}, "train.norm must be one of none, group, got 'batch'"),
        (
            {"norm": "group", "norm_groups": 8, "filters": [32, 20]},
            "train.norm_groups (8) must divide every filter count, not 20",
        ),
        ({"dec_kernel": 6}, "train.dec_kernel must be odd, got 6"),
        ({"encoder_filters": [64, 32]}, "train.encoder_filters has 2 entries but filters has 3"),
        ({"encoder_filters": [64, 0, 32]}, "train.encoder_filters must be a positive integer, got 0"),
        (
            {"norm": "group", "norm_groups": 8, "encoder_filters": [64, 20, 32]},
            "train.norm_groups (8) must divide every filter count, not 20",
        ),
        ({"filters": [32, 0]}, "train.filters must be a positive integer, got 0"),
        ({"filters": []}, "train.filters must be a non-empty list"),
        ({"lr": 0}, "train.lr must be a positive number, got 0"),
        ({"optimizer": "sgd"}, "train.optimizer must be one of adam, rmsprop, got 'sgd'"),
        ({"sweep_ratio": {"pose": 1}}, "train.sweep_ratio has unknown group 'pose'"),
        ({"sweep_ratio": {"azimuth": -1}}, "train.sweep_ratio.azimuth must be a non-negative number"),
        ({"latent": 3}, "train.latent (3) must exceed"),
        ({"colour": 1}, "unknown parameter train.colour"),
    ],
)
def test_bad_params(change, message):
    params = default_params()
    params["train"].update(change)
    with pytest.raises(ConfigError) as e:
        config_from_params(params)
    assert message in str(e.value)


def test_missing_params():
    params = default_params()
    del params["train"]["kl_weight"]
    with pytest.raises(ConfigError, match="train.kl_weight is missing"):
        config_from_params(params)
    with pytest.raises(ConfigError, match="seed is missing"):
        config_from_params({"train": default_params()["train"]})
    with pytest.raises(ConfigError, match="train section is missing"):
        config_from_params({"seed": 0})


def test_cli_params_error_is_one_line_and_writes_nothing(tmp_path):
    params = write_params(tmp_path / "params.yaml", steps=-3)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["--params", str(params), "--data", str(tmp_path), "--out", str(out)])
    assert r.exit_code == 2
    assert r.output.strip() == f"Error: {params}: train.steps must be a positive integer, got -3"
    assert not out.exists()


def test_cli_missing_params_file(tmp_path):
    r = CliRunner().invoke(main, ["--params", str(tmp_path / "p.yaml"), "--data", "x", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "params file not found" in r.output


POOLINGS = (
    "train.filters has 6 entries (6 2x2 poolings) but the data's images are 32x32: at most 5 fit;"
    " use fewer filters (train.filters or --set filters=[...])"
)


def test_too_many_poolings_for_the_data_name_train_filters():
    cfg = config_from_params(default_params(), ("filters=[32,32,32,32,32,32]",))  # fits the smallest resolution
    assert with_resolution(cfg, 64).model.feature_size == 1
    with pytest.raises(ConfigError) as e:
        with_resolution(cfg, 32)
    assert str(e.value) == POOLINGS
    with pytest.raises(ConfigError) as e:  # a model config on its own (a checkpoint's) says the same
        ModelConfig(resolution=32, filters=(32,) * 6).validate()
    assert str(e.value) == POOLINGS.removeprefix("train.")


def test_cli_too_many_poolings_for_the_data_is_one_line_naming_train_filters(tmp_path):
    (data,) = make_fake_dataset(tmp_path / "data", sweeps=("azimuth",), resolution=32, n_batches=2, batch_size=2)
    params, out = write_params(tmp_path / "params.yaml"), tmp_path / "out"
    args = ["--params", str(params), "--set", "filters=[32,32,32,32,32,32]", "--data", str(data), "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0 and r.output.strip() == f"Error: {POOLINGS}"
    assert not out.exists()
