"""DC-IGN: Deep Convolutional Inverse Graphics Network (Kulkarni et al., NIPS 2015)."""

from dcign.checkpoint import CheckpointError, load_model, trained_method
from dcign.config import GROUPED_METHODS, GROUPS, METHODS, ConfigError, ModelConfig, TrainConfig
from dcign.model import DCIGN

__all__ = [
    "DCIGN",
    "GROUPED_METHODS",
    "GROUPS",
    "METHODS",
    "CheckpointError",
    "ConfigError",
    "ModelConfig",
    "TrainConfig",
    "load_model",
    "trained_method",
]
