"""Model and training configuration, and reading them from params.yaml.

params.yaml holds a top-level ``seed`` and a flat ``train:`` section whose keys are
the fields of :class:`TrainConfig` and of :class:`ModelConfig` (except ``resolution``
and ``channels``, which come from the data). Every key must be present: a missing,
unknown or malformed key is a :class:`ConfigError` naming it. The dataclass defaults
equal the shipped params.yaml (``tests/test_params.py`` checks that they do).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from render.params import ParamsError, load_params, parse_yaml, source

_MISSING = object()

# Latent groups in code order; every render sweep makes exactly one of them active.
GROUPS = ("azimuth", "elevation", "light", "intrinsic")
# Training methods: the DC-IGN's clamped sweep batches, an ordinary VAE on random images, and the
# disentangling baselines on the same network (dcign/objectives.py): beta-VAE, beta-TCVAE, FactorVAE
# on random images, and the weakly supervised Ada-GVAE on pairs of images from one sweep batch.
METHODS = ("dcign", "vae", "beta_vae", "beta_tcvae", "factor_vae", "ada_gvae")
# Methods whose latent groups are assigned to factors (the others are scored by their best single latents).
GROUPED_METHODS = ("dcign",)


# Upper bounds, each with its reason: checked before any data is loaded, so a typo is one line.
MAX_STEPS = 10**9
MAX_BATCHES_PER_STEP = 1024
MAX_WIDTH = 4096  # conv filters, latent dimensions and discriminator units
MAX_DEPTH = 64  # FactorVAE discriminator layers


class ConfigError(ParamsError):
    """A configuration value is missing, unknown or out of range (message names it)."""


@dataclass(frozen=True)
class ModelConfig:
    resolution: int = 64  # image height = width in pixels; set from the data
    channels: int = 1  # image channels (greyscale)
    filters: tuple[int, ...] = (32, 32, 32)  # encoder conv filters, one 2x2 max-pool each; paper 96, 64, 32
    # The encoder's own filters when they differ from `filters` (as many; the decoder still mirrors `filters`):
    # the encoder costs a fraction of the decoder's 7x7 convolutions, so it can widen cheaply. Empty: `filters`.
    encoder_filters: tuple[int, ...] = ()
    enc_kernel: int = 5  # encoder conv kernel (paper 5x5)
    dec_kernel: int = 7  # decoder conv kernel, odd (paper 7x7)
    latent: int = 32  # latent dimensions (paper 200)
    z_azimuth: int = 1  # latents in the azimuth group (first in the code)
    z_elevation: int = 1  # then elevation
    z_light: int = 1  # then light azimuth; the rest is the intrinsic group
    recon: str = "gaussian"  # likelihood: gaussian (sigma below) or bernoulli (BCE summed over pixels: the paper)
    gaussian_std: float = 0.1  # fixed sigma of the gaussian likelihood (unused for bernoulli)
    init_std: float = 0.01  # linear weights ~ N(0, init_std) as in the paper; 0 keeps PyTorch's default
    conv_init: str = "he"  # conv weights: he (Kaiming normal for ReLU) or default (PyTorch's, as Torch7's: the paper)
    norm: str = "group"  # group: GroupNorm after every hidden conv, or none (the paper)
    norm_groups: int = 8  # groups of the GroupNorm: a layer of c < 8 channels gets c; must divide every filter count

    def norm_groups_for(self, channels: int) -> int:
        """GroupNorm groups of a layer with this many channels: norm_groups, or one per channel when fewer."""
        return min(self.norm_groups, channels)

    @property
    def encoder_widths(self) -> tuple[int, ...]:
        """The encoder's conv filters: encoder_filters, or filters when it is empty."""
        return self.encoder_filters or self.filters

    @property
    def feature_size(self) -> int:
        """Side of the encoder's last feature map (same-padded convs, floor pooling)."""
        s = self.resolution
        for _ in self.filters:
            s //= 2
        return s

    @property
    def group_sizes(self) -> dict[str, int]:
        fixed = self.z_azimuth + self.z_elevation + self.z_light
        return {
            "azimuth": self.z_azimuth,
            "elevation": self.z_elevation,
            "light": self.z_light,
            "intrinsic": self.latent - fixed,
        }

    @property
    def groups(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, size in self.group_sizes.items():
            out[name] = slice(start, start + size)
            start += size
        return out

    def validate(self) -> ModelConfig:
        for name in ("resolution", "channels", "enc_kernel", "dec_kernel", "latent"):
            _positive_int(name, getattr(self, name))
        for name in ("z_azimuth", "z_elevation", "z_light"):
            _nonneg_int(name, getattr(self, name))
        if self.dec_kernel % 2 == 0:  # "same" padding k // 2 keeps the size only for odd k
            raise ConfigError(f"dec_kernel must be odd, got {self.dec_kernel}")
        if not isinstance(self.filters, tuple) or not self.filters:
            raise ConfigError(f"filters must be a non-empty list of positive integers, got {self.filters!r}")
        for f in self.filters:
            _positive_int("filters", f)
            _at_most("filters", f, MAX_WIDTH, "a layer's weights grow with its square")
        if not isinstance(self.encoder_filters, tuple):
            raise ConfigError(f"encoder_filters must be a list of positive integers, got {self.encoder_filters!r}")
        if self.encoder_filters and len(self.encoder_filters) != len(self.filters):
            raise ConfigError(
                f"encoder_filters has {len(self.encoder_filters)} entries but filters has {len(self.filters)}: "
                "one per 2x2 pooling, as many as the decoder mirrors (or [] to use filters)"
            )
        for f in self.encoder_filters:
            _positive_int("encoder_filters", f)
            _at_most("encoder_filters", f, MAX_WIDTH, "a layer's weights grow with its square")
        _at_most("latent", self.latent, MAX_WIDTH, "the paper's code has 200")
        if self.group_sizes["intrinsic"] < 1:
            raise ConfigError(f"latent ({self.latent}) must exceed z_azimuth + z_elevation + z_light")
        if self.feature_size < 1:
            raise ConfigError(too_many_poolings(len(self.filters), self.resolution, prefix=""))
        _choice("recon", self.recon, ("bernoulli", "gaussian"))
        _positive_float("gaussian_std", self.gaussian_std)
        _nonneg_float("init_std", self.init_std)
        _choice("conv_init", self.conv_init, ("default", "he"))
        _choice("norm", self.norm, ("none", "group"))
        _positive_int("norm_groups", self.norm_groups)
        if self.norm == "group":  # GroupNorm needs its groups to divide the channels of every layer
            for f in (*self.filters, *self.encoder_filters):
                if f % self.norm_groups_for(f):
                    raise ConfigError(f"norm_groups ({self.norm_groups}) must divide every filter count, not {f}")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["filters"] = list(self.filters)
        d["encoder_filters"] = list(self.encoder_filters)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["filters"] = tuple(d["filters"])
        d["encoder_filters"] = tuple(d.get("encoder_filters", ()))  # checkpoints from before the option: ()
        return cls(**d).validate()


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0  # seeds the init, the batch order and the sampling noise (params: top-level seed)
    steps: int = 3000  # optimizer steps in all (a resumed run continues to this count)
    batches_per_step: int = 1  # render batches per step per process, gradients averaged (DDP: x world size)
    optimizer: str = "adam"  # adam or rmsprop
    lr: float = 5e-4  # learning rate (paper 5e-4)
    lr_schedule: str = "constant"  # constant (the paper) or cosine: decay to 0 at `steps` after the warm-up
    warmup_steps: int = 0  # steps of linear warm-up from 0 to lr (both schedules)
    invariance: float = 10.0  # lambda: inactive latents get gradient lambda * (z - batch mean) (paper ~1/100)
    kl_weight: float = 1.0  # weight of KL(q(z|x) || N(0, I)) against the reconstruction NLL
    # KL on the clamped (inactive) latents of a sweep batch: false as the released code, which zeroed
    # their gradient KL included; true puts the prior's pull on every latent of every batch.
    kl_clamped: bool = False
    # Reconstruction gradient of the clamped latents: replace (the paper: only the invariance pull
    # reaches them) or mean (also the true gradient of the batch mean the decoder saw).
    clamp_grad: str = "replace"
    # What the clamped latents are set to: mean (the paper: their batch mean) or first (the released
    # code: the first image's code). The invariance pull is toward the batch mean either way.
    clamp_to: str = "mean"
    # Weight of a second reconstruction of every image of a sweep batch from its own posterior mean,
    # unclamped, whose gradient reaches the decoder only: the decoder also learns to draw the face a
    # code holds, while the encoder keeps the paper's objective. 0 is the paper (a deviation).
    own_recon: float = 0.0
    # The last decoder_steps of `steps` train the decoder alone (encoder frozen) to reconstruct each
    # image from its own posterior mean, unclamped. 0 is the paper (a deviation).
    decoder_steps: int = 0
    # Share of a sweep batch's images that the decoder phase decodes from another image's code of the
    # batch with their own active group (the edit that re-rendering makes): the decoder learns to
    # draw the target pose from a code whose intrinsic group still carries the source's. 0: own code.
    decoder_swap: float = 0.0
    # Weight of the edit term of the clamped steps: an edit_share of each sweep batch's images is also
    # reconstructed from the code that re-rendering makes (its own active group, another image's
    # other groups, posterior means), the gradient reaching encoder and decoder. 0 is the paper (a deviation).
    edit_recon: float = 0.0
    edit_share: float = 0.25  # share of a sweep batch's images the edit term decodes (each from a random other image)
    # Relative frequency of batch types per latent group (paper ~1:1:1:10); groups absent from the data are skipped.
    sweep_ratio: dict[str, float] = field(
        default_factory=lambda: {"azimuth": 1.0, "elevation": 1.0, "light": 1.0, "intrinsic": 3.0}
    )
    method: str = "dcign"  # dcign (clamped sweep batches), vae (random images, no clamp) or a baseline (METHODS)
    beta: float = 4.0  # beta_vae: KL weight, in place of kl_weight (Higgins et al. 2017: beta > 1)
    tcvae_alpha: float = 1.0  # beta_tcvae: weight of the index-code mutual information (Chen et al. 2018: 1)
    tcvae_beta: float = 6.0  # beta_tcvae: weight of the total correlation (Chen et al. 2018: beta > 1)
    tcvae_gamma: float = 1.0  # beta_tcvae: weight of the dimension-wise KL (Chen et al. 2018: 1)
    factor_gamma: float = 10.0  # factor_vae: weight of the discriminator's TC (Kim & Mnih 2018: 6.4-40 on 64x64)
    factor_lr: float = 1e-4  # factor_vae: discriminator Adam learning rate (Kim & Mnih 2018: 1e-4, betas 0.5, 0.9)
    factor_hidden: int = 1000  # factor_vae: units per hidden layer of the discriminator (Kim & Mnih 2018: 1000)
    factor_layers: int = 6  # factor_vae: linear layers of the discriminator (Kim & Mnih 2018: 6)
    precision: str = "bf16"  # fp32 or bf16 (torch.autocast on CPU and CUDA)
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    channels_last: bool = True  # NHWC memory format for the convolutions
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn-only on CUDA)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    checkpoint_every: int = 500  # steps between checkpoints (and one at the end)
    log_every: int = 10  # steps between dvclive rows
    model: ModelConfig = field(default_factory=ModelConfig)  # network; resolution is filled in from the data

    def validate(self) -> TrainConfig:
        _int("seed", self.seed)
        for name in ("steps", "batches_per_step", "checkpoint_every", "log_every"):
            _positive_int(name, getattr(self, name))
        _at_most("steps", self.steps, MAX_STEPS, "a billion steps would take years on any machine")
        _at_most("batches_per_step", self.batches_per_step, MAX_BATCHES_PER_STEP, "a step holds them all in memory")
        _nonneg_int("threads", self.threads)
        _choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        _choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        _nonneg_int("warmup_steps", self.warmup_steps)
        _positive_float("lr", self.lr)
        _nonneg_float("invariance", self.invariance)
        _nonneg_float("kl_weight", self.kl_weight)
        _ratio("sweep_ratio", self.sweep_ratio)
        _choice("clamp_grad", self.clamp_grad, ("replace", "mean"))
        _choice("clamp_to", self.clamp_to, ("mean", "first"))
        _nonneg_float("own_recon", self.own_recon)
        _nonneg_int("decoder_steps", self.decoder_steps)
        _fraction("decoder_swap", self.decoder_swap)
        _nonneg_float("edit_recon", self.edit_recon)
        _fraction("edit_share", self.edit_share)
        if self.decoder_swap > 0 and self.decoder_steps == 0:
            raise ConfigError("decoder_swap applies to the decoder phase: set decoder_steps above 0 too")
        if self.decoder_steps >= self.steps:
            raise ConfigError(
                f"decoder_steps ({self.decoder_steps}) must be below steps ({self.steps}): they are the last of them"
            )
        _choice("method", self.method, METHODS)
        for name in ("beta", "tcvae_alpha", "tcvae_beta", "tcvae_gamma", "factor_gamma"):
            _nonneg_float(name, getattr(self, name))
        _positive_float("factor_lr", self.factor_lr)
        for name in ("factor_hidden", "factor_layers"):
            _positive_int(name, getattr(self, name))
        _at_most("factor_hidden", self.factor_hidden, MAX_WIDTH, "a layer's weights grow with its square")
        _at_most("factor_layers", self.factor_layers, MAX_DEPTH, "the paper's discriminator has 6")
        for name in ("kl_clamped", "channels_last", "deterministic"):
            _bool(name, getattr(self, name))
        _choice("precision", self.precision, ("fp32", "bf16"))
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        self.model.validate()
        return self

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        d["sweep_ratio"] = dict(self.sweep_ratio)
        d["model"] = self.model.to_dict()
        return d

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): a pure function of the step, so resumes agree."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            span = max(1, self.steps - self.warmup_steps)
            return 0.5 * self.lr * (1 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))
        return self.lr

    @property
    def entangled(self) -> bool:
        """True when the code has no latent groups (every method but the DC-IGN)."""
        return self.method not in GROUPED_METHODS

    @property
    def batches(self) -> str:
        """What a training slot holds: ``sweep`` (one render batch, clamped), ``pairs`` (one render
        batch shuffled into pairs, Ada-GVAE) or ``random`` (images from anywhere)."""
        return {"dcign": "sweep", "ada_gvae": "pairs"}.get(self.method, "random")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d["model"])
        if "entangled" in d:  # checkpoints written before methods had names
            d.setdefault("method", "vae" if d.pop("entangled") else "dcign")
            d.setdefault("kl_clamped", True)  # those runs put the KL on every latent
        return cls(**d).validate()


# Fields that may differ between a checkpoint and the run resuming it (they don't change the result;
# `steps` only under a constant learning rate and no decoder phase, since a cosine schedule ends at
# `steps` and the decoder phase takes its last decoder_steps).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "device", "threads")
MODEL_PARAMS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("resolution", "channels"))
TRAIN_PARAMS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("seed", "model"))
FLOAT_TRAIN_PARAMS = tuple(f.name for f in fields(TrainConfig) if f.type == "float")  # where a YAML int means a float


# ---------------------------------------------------------------------------- checks


def _int(name, v):
    if not isinstance(v, int) or isinstance(v, bool):
        raise ConfigError(f"{name} must be an integer, got {v!r}")


def _positive_int(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def _at_most(name, v, maximum: int, reason: str):
    if v > maximum:
        raise ConfigError(f"{name} must be at most {maximum} ({reason}), got {v!r}")


def _nonneg_int(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_float(name, v):
    if not _number(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive number, got {v!r}")


def _nonneg_float(name, v):
    if not _number(v) or v < 0:
        raise ConfigError(f"{name} must be a non-negative number, got {v!r}")


def _fraction(name, v):
    if not _number(v) or not 0 <= v <= 1:
        raise ConfigError(f"{name} must be a number from 0 to 1, got {v!r}")


def _bool(name, v):
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be true or false, got {v!r}")


def _choice(name, v, choices):
    if v not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {v!r}")


def _ratio(name, v):
    if not isinstance(v, dict) or not v:
        raise ConfigError(f"{name} must be a mapping of {', '.join(GROUPS)} to weights, got {v!r}")
    for k, w in v.items():
        if k not in GROUPS:
            raise ConfigError(f"{name} has unknown group {k!r} (expected {', '.join(GROUPS)})")
        if not _number(w) or w < 0:
            raise ConfigError(f"{name}.{k} must be a non-negative number, got {w!r}")
    if sum(v.values()) <= 0:
        raise ConfigError(f"{name} must have a positive weight, got {v!r}")


# ---------------------------------------------------------------------------- params.yaml


def _parse_value(text: str) -> Any:
    """A ``--set`` value read as params.yaml would read it (so ``lr=1e-3`` is a number)."""
    try:
        return parse_yaml(text)
    except (yaml.YAMLError, RecursionError):
        return text


def config_from_params(params: dict, overrides: tuple[str, ...] = (), where: str | None = None) -> TrainConfig:
    """Build a TrainConfig from a params mapping (top-level ``seed`` + ``train:`` section).

    ``overrides`` are ``key=value`` strings (``train.steps=10``, ``steps=10`` or ``seed=3``),
    values parsed as YAML. Raises ConfigError with a message naming ``where`` (default: the
    file the mapping was loaded from) and the key.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"{where or 'params.yaml'}: expected a mapping at the top level")
    where = where or source(params)
    section = params.get("train")
    if "train" not in params:
        raise ConfigError(f"{where}: train section is missing")
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: train must be a mapping, got {section!r}")
    if "seed" in section:
        raise ConfigError(f"{where}: unknown parameter train.seed (the seed is the top-level seed)")
    values = {"seed": params.get("seed", _MISSING), **section}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix("train.")
        if not sep or key not in ("seed", *TRAIN_PARAMS, *MODEL_PARAMS):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY a train parameter or seed")
        values[key] = _parse_value(text)

    def dotted(key):
        return key if key == "seed" else f"train.{key}"

    for key in values:
        if key not in ("seed", *TRAIN_PARAMS, *MODEL_PARAMS):
            raise ConfigError(f"{where}: unknown parameter {dotted(key)}")
    for key in ("seed", *TRAIN_PARAMS, *MODEL_PARAMS):
        if values.get(key, _MISSING) is _MISSING:
            raise ConfigError(f"{where}: {dotted(key)} is missing")

    model_kw = {k: values[k] for k in MODEL_PARAMS}
    for k in ("filters", "encoder_filters"):
        if isinstance(model_kw[k], list):
            model_kw[k] = tuple(model_kw[k])
    train_kw = {k: values[k] for k in TRAIN_PARAMS}
    # YAML ints are fine where a float is expected (lr: 1 means 1.0).
    for k in FLOAT_TRAIN_PARAMS:
        if _number(train_kw[k]):
            train_kw[k] = float(train_kw[k])
    for k in ("gaussian_std", "init_std"):
        if _number(model_kw[k]):
            model_kw[k] = float(model_kw[k])
    if isinstance(train_kw["sweep_ratio"], dict):
        train_kw["sweep_ratio"] = {k: float(v) if _number(v) else v for k, v in train_kw["sweep_ratio"].items()}
    try:
        # The data decides the resolution; validate with the smallest that fits the poolings.
        n_pool = len(model_kw["filters"]) if isinstance(model_kw["filters"], tuple) else 0
        model = ModelConfig(resolution=2**n_pool, **model_kw)
        return TrainConfig(seed=values["seed"], model=model, **train_kw).validate()
    except ConfigError as e:
        raise ConfigError(f"{where}: {_prefix(str(e))}") from None


def _prefix(message: str) -> str:
    name = message.split(" ", 1)[0].split(".", 1)[0]
    return message if name == "seed" else f"train.{message}"


def load_config(path: str | Path, overrides: tuple[str, ...] = ()) -> TrainConfig:
    """Read params.yaml (top-level ``seed`` and the ``train:`` section) into a TrainConfig.

    Raises :class:`render.params.ParamsError` for an unreadable file, ConfigError for a bad entry.
    """
    return config_from_params(load_params(path), overrides)


def too_many_poolings(n_filters: int, resolution: int, prefix: str = "train.") -> str:
    """The message for more 2x2 poolings (one per filter) than ``resolution`` x ``resolution`` images allow."""
    fit = max(0, int(resolution).bit_length() - 1)  # 2**fit <= resolution
    return (
        f"{prefix}filters has {n_filters} entries ({n_filters} 2x2 poolings) but the data's images are"
        f" {resolution}x{resolution}: at most {fit} fit; use fewer filters (train.filters or --set filters=[...])"
    )


def with_resolution(cfg: TrainConfig, resolution: int, channels: int = 1) -> TrainConfig:
    """``cfg`` for the data's images; raises ConfigError naming train.filters when its poolings do not fit."""
    if isinstance(resolution, int) and resolution > 0 and resolution < 2 ** len(cfg.model.filters):
        raise ConfigError(too_many_poolings(len(cfg.model.filters), resolution))
    return replace(cfg, model=replace(cfg.model, resolution=resolution, channels=channels)).validate()


def default_params(cfg: TrainConfig | None = None) -> dict:
    """The params.yaml entries (top-level ``seed`` and ``train:`` section) that give ``cfg`` (defaults: None)."""
    cfg = cfg or TrainConfig()
    d = cfg.to_dict()
    model = d.pop("model")
    return {"seed": cfg.seed, "train": {**{k: d[k] for k in TRAIN_PARAMS}, **{k: model[k] for k in MODEL_PARAMS}}}
