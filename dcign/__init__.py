"""DC-IGN: Deep Convolutional Inverse Graphics Network (Kulkarni et al., NIPS 2015)."""

from dcign.checkpoint import CheckpointError, load_model
from dcign.config import GROUPS, SWEEP_GROUP, ConfigError, ModelConfig, TrainConfig
from dcign.model import DCIGN

__all__ = [
    "DCIGN",
    "GROUPS",
    "SWEEP_GROUP",
    "CheckpointError",
    "ConfigError",
    "ModelConfig",
    "TrainConfig",
    "load_model",
]
