"""Checkpoints: ``model.safetensors`` (weights), ``optimizer.pt`` (optimizer state), ``model.json``.

FactorVAE's checkpoints add ``discriminator.safetensors`` (its discriminator's weights); the
discriminator's optimizer state is a second entry of ``optimizer.pt``.

``model.json`` is the commit record: format, step, both configs, a training summary and the
SHA-256 of the other files. A save writes ``<name>.next`` files, then ``model.json``
naming their hashes, then renames them into place (each write atomic: temp file + os.replace).
A kill at any point leaves either the old checkpoint or the new one recoverable:
:func:`recover` finishes an interrupted rename and drops stale ``.next`` and temporary files.
The weights file also carries the model config in its safetensors metadata, so it loads alone;
the metadata is one key holding sorted JSON, because safetensors writes several keys in a
random order and the file's bytes (and so DVC's hash of it) would change from run to run.
No RNG state is needed: the batch order and the noise are functions of (seed, step).
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from pathlib import Path

import safetensors.torch
import torch

from dcign.config import ConfigError, ModelConfig, TrainConfig
from dcign.model import DCIGN
from render.atomic import atomic_write_bytes, atomic_write_json, remove_stale_temporaries, sha256_bytes

FORMAT = "dcign-checkpoint/1"
WEIGHTS, OPTIMIZER, META = "model.safetensors", "optimizer.pt", "model.json"
DISCRIMINATOR = "discriminator.safetensors"  # FactorVAE only
FILES = (WEIGHTS, OPTIMIZER, DISCRIMINATOR)  # every file a record may name
METADATA_KEY = "dcign"  # the safetensors metadata entry holding format, step and model config


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or incompatible with the run that wants it."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _interned(obj):
    """``obj`` with every string one interned object per value, so that its pickle is a function of its value.

    Pickle writes a string again or refers back to it depending on whether the same *object*
    was seen before. A fresh optimizer's keys are the interned literals of torch's code; after a
    resume they are the strings read back from the old file, so an identical state would pickle
    to different bytes (and ``optimizer.pt`` would differ after a kill and resume).
    """
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_interned(k): _interned(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interned(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_interned(v) for v in obj)
    return obj


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(
    out_dir: Path,
    model: DCIGN,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    step: int,
    extra: dict,
    discriminator: torch.nn.Module | None = None,
    discriminator_optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Write the training state after ``step`` optimizer steps (see the module doc for the order)."""
    out_dir = Path(out_dir)
    packed = {"format": FORMAT, "step": step, "model_config": cfg.model.to_dict(), "method": cfg.method}
    meta_st = {METADATA_KEY: json.dumps(packed, sort_keys=True)}
    state = {"optimizer": optimizer.state_dict(), "step": step}
    if discriminator_optimizer is not None:
        state["discriminator"] = discriminator_optimizer.state_dict()
    buf = io.BytesIO()
    torch.save(_interned(state), buf)
    files = {WEIGHTS: safetensors.torch.save(_tensors(model), metadata=meta_st), OPTIMIZER: buf.getvalue()}
    if discriminator is not None:
        files[DISCRIMINATOR] = safetensors.torch.save(_tensors(discriminator))
    for name, data in files.items():
        atomic_write_bytes(out_dir / f"{name}.next", data)
    meta = {
        "format": FORMAT,
        "step": step,
        "model_config": cfg.model.to_dict(),
        "train_config": cfg.to_dict(),
        "feature_size": cfg.model.feature_size,
        "groups": {g: [s.start, s.stop] for g, s in cfg.model.groups.items()},
        "files": {name: sha256_bytes(data) for name, data in files.items()},
        **extra,
    }
    atomic_write_json(out_dir / META, meta)
    for name in files:
        os.replace(out_dir / f"{name}.next", out_dir / name)
    _fsync_dir(out_dir)


def _read_meta(out_dir: Path) -> dict:
    path = Path(out_dir) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint record ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    step, files = meta.get("step"), meta.get("files", {})
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: step must be a non-negative integer, got {step!r:.40}")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise CheckpointError(f"{path}: files must map file names to SHA-256 digests")
    if set(files) - set(FILES):  # a record naming other files would have them renamed or hashed
        raise CheckpointError(f"{path}: files names {sorted(set(files) - set(FILES))}, not checkpoint files")
    return meta


def has_checkpoint(out_dir: Path) -> bool:
    return (Path(out_dir) / META).exists() or (Path(out_dir) / WEIGHTS).exists()


def recover(out_dir: Path) -> dict | None:
    """Repair an interrupted save; return the checkpoint record, or None when there is no checkpoint."""
    out_dir = Path(out_dir)
    if not (out_dir / META).exists():
        if (out_dir / WEIGHTS).exists():
            raise CheckpointError(f"{out_dir}: {WEIGHTS} without {META}; not a resumable checkpoint")
        for name in FILES:  # a first save that never committed
            (out_dir / f"{name}.next").unlink(missing_ok=True)
        if out_dir.is_dir():
            remove_stale_temporaries(out_dir)
        return None
    meta = _read_meta(out_dir)
    for name, digest in meta.get("files", {}).items():
        final, staged = out_dir / name, out_dir / f"{name}.next"
        if final.exists() and sha256_bytes(final.read_bytes()) == digest:
            staged.unlink(missing_ok=True)
        elif staged.exists() and sha256_bytes(staged.read_bytes()) == digest:
            os.replace(staged, final)  # the save was killed between its renames
        else:
            raise CheckpointError(f"{final}: missing or checksum mismatch against {META}; the checkpoint is corrupt")
    for name in FILES:  # staged files of a save killed before it committed
        (out_dir / f"{name}.next").unlink(missing_ok=True)
    remove_stale_temporaries(out_dir)  # of a write killed before its rename
    _fsync_dir(out_dir)
    return meta


def _safetensors_metadata(data: bytes, path: Path) -> dict:
    try:
        (n,) = struct.unpack("<Q", data[:8])
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
        if METADATA_KEY in meta:
            return json.loads(meta[METADATA_KEY])
        # Checkpoints written before the metadata was packed into one key.
        if "model_config" in meta:
            meta = {**meta, "step": int(meta.get("step", 0)), "model_config": json.loads(meta["model_config"])}
        return meta
    except (struct.error, ValueError, AttributeError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None


def _build(data: bytes, path: Path, map_location) -> tuple[DCIGN, ModelConfig]:
    meta = _safetensors_metadata(data, path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} weights file")
    try:
        cfg = ModelConfig.from_dict(meta["model_config"])
        state = safetensors.torch.load(data)
        model = DCIGN(cfg)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: incompatible or corrupt weights ({first})") from None
    return model.to(map_location), cfg


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[DCIGN, ModelConfig, dict]:
    """Load a trained DC-IGN from a checkpoint directory or its ``model.safetensors``.

    Returns (model in eval mode, its ModelConfig, training info: the ``model.json`` record
    with step, train_config, summary, ...; only ``step`` and ``method`` when the weights file is
    alone). :func:`trained_method` reads the method from either.
    """
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    try:
        data = weights.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{weights}: cannot read checkpoint ({e.strerror or e})") from None
    info = None
    if (weights.parent / META).exists():
        info = _read_meta(weights.parent)
        if info.get("files", {}).get(weights.name, sha256_bytes(data)) != sha256_bytes(data):
            raise CheckpointError(
                f"{weights}: checksum mismatch against {META} (interrupted save: resume training to repair it)"
            )
    model, cfg = _build(data, weights, map_location)
    if info is None:
        packed = _safetensors_metadata(data, weights)
        info = {"step": int(packed.get("step", 0)), **({"method": packed["method"]} if "method" in packed else {})}
    return model.eval(), cfg, info


def trained_method(info: dict, where: str | Path = "checkpoint") -> str:
    """The training method recorded in a checkpoint (``load_model``'s info): dcign, vae, ...

    Read from the checkpoint's own train config (or the weights file's metadata when it is
    alone), never guessed: scoring a baseline as a DC-IGN would read meaning into latents 0, 1, 2.
    """
    tc = info.get("train_config")
    if isinstance(tc, dict):
        if "method" in tc:
            return str(tc["method"])
        if "entangled" in tc:  # checkpoints written before methods had names
            return "vae" if tc["entangled"] else "dcign"
    if "method" in info:
        return str(info["method"])
    raise CheckpointError(f"{where}: the checkpoint does not record how it was trained (no train_config)")


def load_training_state(out_dir: Path, meta: dict) -> tuple[dict, dict]:
    """Weights state_dict and optimizer state of a recovered checkpoint (see :func:`recover`)."""
    out_dir = Path(out_dir)
    data = (out_dir / WEIGHTS).read_bytes()
    _safetensors_metadata(data, out_dir / WEIGHTS)
    try:
        state = safetensors.torch.load(data)
        opt = torch.load(out_dir / OPTIMIZER, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same failure for the user
        raise CheckpointError(f"{out_dir}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if opt.get("step") != meta.get("step"):
        raise CheckpointError(f"{out_dir}: {OPTIMIZER} is from step {opt.get('step')}, {META} from {meta.get('step')}")
    return state, opt["optimizer"]


def load_discriminator_state(out_dir: Path, meta: dict) -> tuple[dict, dict]:
    """FactorVAE's discriminator weights and optimizer state of a recovered checkpoint."""
    out_dir = Path(out_dir)
    if DISCRIMINATOR not in meta.get("files", {}):
        raise CheckpointError(f"{out_dir}: {META} names no {DISCRIMINATOR}; not a FactorVAE checkpoint")
    try:
        state = safetensors.torch.load((out_dir / DISCRIMINATOR).read_bytes())
        opt = torch.load(out_dir / OPTIMIZER, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same failure for the user
        raise CheckpointError(f"{out_dir}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if "discriminator" not in opt:
        raise CheckpointError(f"{out_dir}: {OPTIMIZER} holds no discriminator optimizer state")
    return state, opt["discriminator"]
