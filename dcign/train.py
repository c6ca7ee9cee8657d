"""Train a DC-IGN (or a baseline: the entangled VAE, beta-VAE, beta-TCVAE, FactorVAE, Ada-GVAE) on rendered batches.

One loop, read top to bottom: set up (devices, data, checkpoint, model, optimizer, logger),
then per step: data (the schedule's slots for this rank -> tensors), compute (forward with
the clamp, the method's regulariser from dcign/objectives.py, backward, all-reduce under DDP),
check (stop on NaN before the update), update, log, checkpoint. The last ``decoder_steps`` steps,
when set, are the decoder phase (``decoder_step``: the encoder frozen, the decoder fitted to each
image from its own posterior mean). FactorVAE's discriminator is
trained in the same step, by its own optimizer, on the same codes. Under ``torchrun``
(WORLD_SIZE > 1) every rank takes its own render batches from the same schedule, so one
step's global batch is world_size x batches_per_step render batches; a single process with
batches_per_step = world_size computes the same step.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dcign.checkpoint import (
    CheckpointError,
    has_checkpoint,
    load_discriminator_state,
    load_training_state,
    recover,
    save_checkpoint,
)
from dcign.config import RESUMABLE_CHANGES, TrainConfig, with_resolution
from dcign.data import Schedule, fetch_optional, load_training_data
from dcign.model import DCIGN, loss_terms, reconstruction_nll
from dcign.objectives import DISCRIMINATOR_BETAS, Discriminator, discriminator_loss, permute_dims, regulariser
from render.atomic import check_writable, exclusive, removed_if_failed_empty

TERMS = ("loss", "recon", "kl", "invariance")
TIMINGS = ("images_per_s", "data_fraction", "elapsed_s")  # summary keys that vary with the machine
DATA_ON_GPU_MAX_BYTES = 4 << 30  # keep the uint8 images on the GPU when they fit this


LOSS_WINDOW = "recent_terms"  # model.json: the TERMS of the last <= 50 steps, for the summary of a resumed run


class TrainError(RuntimeError):
    """Training cannot start or continue (the message says why and what is kept)."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("device: cuda requested but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


# (images, noise, active group, FactorVAE's permutation, the decoder phase's swap partners): one slot
Batch = tuple[torch.Tensor, torch.Tensor, str | None, torch.Tensor | None, torch.Tensor | None]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=cfg.lr)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[Batch],
    cfg: TrainConfig,
    world_size: int = 1,
    dataset_size: int = 1,
    critic: tuple[nn.Module, torch.optim.Optimizer] | None = None,
) -> list[float]:
    """One optimizer step over this rank's batches (``Batch``); returns TERMS.

    ``dataset_size``: images the batches are drawn from (beta-TCVAE's estimator); ``critic``:
    FactorVAE's discriminator and its optimizer, stepped with the model. The terms are averaged
    over the batches (and all ranks). The update is skipped when any term is not finite, so the
    caller can stop with the weights of the last good step.
    """
    raw = model.module if isinstance(model, DistributedDataParallel) else model
    device = batches[0][0].device
    k = len(batches)
    optimizer.zero_grad(set_to_none=True)
    if critic is not None:
        critic[1].zero_grad(set_to_none=True)
    totals = torch.zeros(len(TERMS) + 1, device=device)  # TERMS, then the discriminator's loss (FactorVAE)
    for i, (x, eps, active, permutation, partner) in enumerate(batches):
        # Under DDP, all-reduce gradients only with the last of this rank's batches.
        last = i == k - 1 or not isinstance(model, DistributedDataParallel)
        with contextlib.nullcontext() if last else model.no_sync():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                out = model(
                    x,
                    active=active,
                    invariance=cfg.invariance / k,
                    eps=eps,
                    pairs=cfg.batches == "pairs",
                    clamp_grad=cfg.clamp_grad,
                    clamp_to=cfg.clamp_to,
                    own_recon=cfg.own_recon > 0,
                    partner=partner if cfg.edit_recon > 0 else None,
                )
            t = loss_terms(raw, out, x, active, cfg.kl_clamped)
            disc = critic[0] if critic is not None else None
            reg = regulariser(cfg, t["kl"], out.z, out.mu, out.logvar, dataset_size, disc)
            objective = t["recon"] + reg  # the clamp injects the invariance gradient itself
            if "own_recon" in t:  # its gradient reaches the decoder only (the code was detached)
                objective = objective + cfg.own_recon * t["own_recon"]
            if "edit_recon" in t:  # its gradient reaches encoder and decoder (the edit re-rendering makes)
                objective = objective + cfg.edit_recon * t["edit_recon"]
            if disc is not None:  # trains the discriminator only: the codes are constants to it
                z = out.z.detach()
                objective_d = discriminator_loss(disc, z, permute_dims(z, permutation))
                (objective_d / k).backward()
                totals[-1] += objective_d.detach() / k
            (objective / k).backward()
        loss = objective.detach() + cfg.invariance * t["invariance"]
        totals[:-1] += torch.stack([loss, t["recon"].detach(), t["kl"].detach(), t["invariance"]]) / k
    if world_size > 1:
        dist.all_reduce(totals)
        totals /= world_size
        if critic is not None:  # the discriminator is not wrapped in DDP: average its gradients here
            for p in critic[0].parameters():
                dist.all_reduce(p.grad)
                p.grad /= world_size
    values, loss_d = totals[:-1].tolist(), totals[-1].item()
    if not math.isfinite(loss_d):  # a diverged discriminator stops the run like a diverged model
        values[0] = loss_d
    if all(math.isfinite(v) for v in values):
        optimizer.step()
        if critic is not None:
            critic[1].step()
    return values


def decoder_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[Batch],
    cfg: TrainConfig,
    world_size: int = 1,
) -> list[float]:
    """One step of the decoder phase: the encoder frozen, the decoder fitted to each image from its own
    posterior mean, unclamped; returns TERMS (loss = recon, the KL for the record, no invariance).

    With ``decoder_swap``, an image of a sweep batch whose slot names another image of the batch as
    its partner is decoded from the partner's code with its own active group (its swept angle, or
    its face in an intrinsic batch): the edit that re-rendering makes, with the true image as target.

    The update is skipped when a term is not finite, as in :func:`train_step`. Under DDP the decoder's
    gradients are averaged here (the encoder has none, which DDP's own reducer does not allow).
    """
    raw = model.module if isinstance(model, DistributedDataParallel) else model
    device = batches[0][0].device
    k = len(batches)
    optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(len(TERMS), device=device)
    for x, _, active, _, partner in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            with torch.no_grad():
                mu, logvar = raw.encode(x)  # (N, D) each
                code = mu
                if partner is not None:  # the partner's inactive groups, the image's own active group
                    code = raw.edit_code(mu, active, partner)
            logits = raw.decoder(code)
        recon = reconstruction_nll(raw.config, logits, x)
        (recon / k).backward()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        totals += torch.stack([recon.detach(), recon.detach(), kl, torch.zeros_like(kl)]) / k
    if world_size > 1:
        dist.all_reduce(totals)
        totals /= world_size
        for p in raw.decoder.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world_size
    values = totals.tolist()
    if all(math.isfinite(v) for v in values):
        optimizer.step()
    return values


def _init_distributed() -> tuple[int, int, int, bool]:
    """(rank, world size, local rank, whether we started the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    started = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        started = True
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), started


def _check_resumable(meta: dict, cfg: TrainConfig, slots_per_step: int, out_dir: Path) -> None:
    try:
        saved = TrainConfig.from_dict(meta["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{out_dir}: checkpoint record has no usable train_config ({e})") from None
    r_old, r_new = saved.model.resolution, cfg.model.resolution
    if r_old != r_new:
        raise TrainError(
            f"resolution mismatch: the checkpoint in {out_dir} was trained on {r_old}x{r_old} images, "
            f"the data is {r_new}x{r_new}"
        )
    # Under a cosine schedule, and with a decoder phase (the last decoder_steps of them), `steps` shapes the run.
    fixed_length = cfg.lr_schedule == "constant" and cfg.decoder_steps == 0
    resumable = RESUMABLE_CHANGES if fixed_length else tuple(n for n in RESUMABLE_CHANGES if n != "steps")
    diffs = [
        f"{f.name}={getattr(saved, f.name)!r} (now {getattr(cfg, f.name)!r})"
        for f in fields(TrainConfig)
        if f.name not in (*resumable, "batches_per_step", "model") and getattr(saved, f.name) != getattr(cfg, f.name)
    ]
    diffs += [
        f"{name}={a!r} (now {b!r})"
        for name, a in saved.model.to_dict().items()
        if (b := cfg.model.to_dict()[name]) != a
    ]
    if meta.get("slots_per_step", slots_per_step) != slots_per_step:
        diffs.append(f"batches per step x processes={meta['slots_per_step']} (now {slots_per_step})")
    if diffs:
        raise TrainError(f"cannot resume {out_dir}: it was trained with {'; '.join(diffs)}")


def _loss_window(meta: dict | None, out_dir: Path) -> list[list[float]]:
    """The checkpoint's window of recent loss terms (empty for a fresh run, or a checkpoint from before it was kept)."""
    window = (meta or {}).get(LOSS_WINDOW, [])
    ok = isinstance(window, list) and all(
        isinstance(r, list) and len(r) == len(TERMS) and all(isinstance(v, (int, float)) for v in r) for r in window
    )
    if not ok:
        raise CheckpointError(f"{out_dir}: {LOSS_WINDOW} in the checkpoint record must be rows of {len(TERMS)} numbers")
    return [[float(v) for v in r] for r in window]


def _restore(target: nn.Module | torch.optim.Optimizer, state: dict, out_dir: Path, what: str) -> None:
    """Load a checkpoint's state into a module or an optimizer; a mismatch is one line naming the checkpoint."""
    module = isinstance(target, nn.Module)
    errors = (RuntimeError,) if module else (ValueError, KeyError)  # a module's shapes/keys; an optimizer's groups
    try:
        target.load_state_dict(state)
    except errors as e:
        raise CheckpointError(f"{out_dir}: {what} ({str(e).splitlines()[0] if module else e})") from None


def _truncate_live(live_dir: Path, done: int) -> None:
    """Drop dvclive rows logged after the checkpoint we resume from (they will be logged again)."""
    for tsv in (Path(live_dir) / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        if not lines:
            continue
        col = lines[0].rstrip("\n").split("\t").index("step")
        keep = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and int(ln.split("\t")[col]) <= done]
        tsv.write_text("".join(keep))


def open_live(live_dir: Path, resume: bool):
    """dvclive's logger for the loss curves and the summary: no dvc.yaml, no experiment of its own, no report.

    dvclive looks at the DVC and git repositories around the working directory. Outside any it
    logs all the same, and under ``dvc repro`` or ``dvc exp run`` DVC tracks the files; in a git
    repository without a commit it cannot start (dvclive 3.49), which stops training here with one line.
    """
    from dvclive import Live

    try:
        return Live(dir=str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)
    except Exception as e:  # scmrepo's SCMError("Empty git repo"), not a class dcign depends on
        raise TrainError(
            f"{live_dir}: dvclive cannot start here ({type(e).__name__}: {e}); commit once (git commit) "
            "or train outside this git repository"
        ) from None


def train(
    cfg: TrainConfig,
    data_dirs: list[Path],
    out_dir: Path,
    resume: bool = False,
    live_dir: Path | None = None,
    progress: bool = False,
) -> dict:
    """Train to ``cfg.steps`` steps, checkpointing into ``out_dir``; return the run summary.

    ``resume``: continue the checkpoint in ``out_dir`` (or start fresh when there is none).
    Without it an existing checkpoint is an error, never overwritten. Raises TrainError,
    ConfigError, CheckpointError or render.shards.ShardError with a one-line message.
    """
    rank, world, local_rank, started = _init_distributed()
    try:
        with removed_if_failed_empty(Path(out_dir), live_dir and Path(live_dir)), _training_lock(Path(out_dir), rank):
            return _train(
                cfg, [Path(d) for d in data_dirs], Path(out_dir), resume, live_dir, progress, rank, world, local_rank
            )
    finally:
        if started:
            dist.destroy_process_group()


LOCK = ".train.lock"  # in the checkpoint folder while a training writes it


@contextlib.contextmanager
def _training_lock(out_dir: Path, rank: int):
    """One training per checkpoint folder: a second one into the same --out is refused in one line
    (rank 0 holds it for the run's processes; the kernel drops it when the holder dies)."""
    if rank != 0:
        yield
        return
    check_writable(out_dir, TrainError)
    with exclusive(
        out_dir / LOCK,
        lambda who: TrainError(f"{out_dir}: {who} is already training into this folder; wait for it to end"),
    ):
        yield


def _train(cfg, data_dirs, out_dir, resume, live_dir, progress, rank, world, local_rank) -> dict:
    # ---- setup: device, data, output dir, resume point (errors before anything is written)
    cfg = cfg.validate()
    device = resolve_device(cfg.device, local_rank)
    if rank == 0 and not resume and has_checkpoint(out_dir):
        raise TrainError(f"{out_dir} already holds a checkpoint; pass --resume to continue it or use another --out")
    data = load_training_data(data_dirs, "cpu")
    if device.type == "cuda" and data.images.numel() <= DATA_ON_GPU_MAX_BYTES:
        data.images = data.images.to(device)
    cfg = with_resolution(cfg, data.resolution)
    schedule = Schedule(
        data,
        cfg.sweep_ratio,
        cfg.seed,
        cfg.model.latent,
        entangled=cfg.batches == "random",
        pairs=cfg.batches == "pairs",
        permutations=cfg.method == "factor_vae",
        swap=cfg.decoder_swap,
        edit=cfg.edit_share if cfg.edit_recon > 0 else 0.0,
        edit_until=cfg.steps - cfg.decoder_steps,
    )
    if rank == 0:
        check_writable(out_dir, TrainError)
    meta = recover(out_dir) if resume and rank == 0 else None
    if world > 1:
        dist.barrier()  # rank 0 has repaired any interrupted save
        if rank != 0 and resume:
            meta = recover(out_dir)
    k, slots_per_step = cfg.batches_per_step, cfg.batches_per_step * world
    start = 0
    if meta is not None:
        _check_resumable(meta, cfg, slots_per_step, out_dir)
        start = int(meta["step"])

    # ---- model and optimizer (seeded, deterministic on CPU)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.manual_seed(cfg.seed)
    model = DCIGN(cfg.model)
    optimizer_state = None
    if meta is not None:
        state, optimizer_state = load_training_state(out_dir, meta)
        _restore(model, state, out_dir, "weights do not fit the model")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    if optimizer_state is not None:
        _restore(optimizer, optimizer_state, out_dir, "optimizer state does not fit")
    critic = None  # FactorVAE's discriminator and its optimizer (initialised after the model, same seed)
    if cfg.method == "factor_vae":
        disc = Discriminator(cfg.model.latent, cfg.factor_hidden, cfg.factor_layers)
        if meta is not None:
            disc_state, disc_opt_state = load_discriminator_state(out_dir, meta)
            _restore(disc, disc_state, out_dir, "discriminator does not fit")
        disc.to(device)
        disc_opt = torch.optim.Adam(disc.parameters(), lr=cfg.factor_lr, betas=DISCRIMINATOR_BETAS)
        if meta is not None:
            _restore(disc_opt, disc_opt_state, out_dir, "discriminator optimizer state does not fit")
        critic = (disc, disc_opt)
    net = model
    if world > 1:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )

    # ---- logging: dvclive on rank 0 (continues the curve on resume), tqdm
    live = None
    if rank == 0 and live_dir is not None:
        if start > 0:
            _truncate_live(live_dir, start)
        live = open_live(live_dir, resume=start > 0)
        live.log_params(
            {
                "seed": cfg.seed,
                "world_size": world,
                **{k_: v for k_, v in cfg.to_dict().items() if k_ != "model"},
                **cfg.model.to_dict(),
            }
        )
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=start, unit="step", dynamic_ncols=True, disable=not progress or rank != 0)
    data_info = {
        "n_batches": data.n_batches,
        "batch_size": data.batch_size,
        "resolution": data.resolution,
        "batches_per_group": {g: int(len(schedule.by_group[g])) for g in schedule.by_group},
    }
    images_per_step = slots_per_step * data.batch_size
    # The last <= 50 steps' terms, whose means are the summary's final_* values. A checkpoint
    # stores them, so a resumed run's summary (and model.json) equals an uninterrupted run's.
    recent = _loss_window(meta, out_dir)
    data_time = step_time = 0.0
    last_ckpt = start if meta is not None else None
    t_start = time.perf_counter()

    def summary(done: int) -> dict:
        wall = time.perf_counter() - t_start
        n = max(1, len(recent))
        means = [sum(r[i] for r in recent) / n for i in range(len(TERMS))] if recent else [math.nan] * len(TERMS)
        return {
            "step": done,
            **{f"final_{t}": means[i] for i, t in enumerate(TERMS)},  # mean over the last <= 50 steps
            "images_per_s": (done - start) * images_per_step / wall if done > start else 0.0,
            "data_fraction": data_time / step_time if step_time else 0.0,
            "elapsed_s": wall,
            "method": cfg.method,
            "world_size": world,
            "device": device.type,
            "precision": cfg.precision,
        }

    if start >= cfg.steps and meta is not None:
        bar.close()
        if live is not None:
            live.end()
        return {**meta.get("summary", {}), "step": start}

    for step in range(start, cfg.steps):
        # ---- data: this rank's slots of the global schedule -> (images, noise, active group)
        t0 = time.perf_counter()
        slots = schedule.slots(step, rank * k, k)
        batches: list[Batch] = []
        for s in slots:
            x, eps = data.fetch(s, device, cfg.channels_last)
            batches.append((x, eps, s.active, fetch_optional(s.perm, device), fetch_optional(s.partner, device)))
        t1 = time.perf_counter()

        # ---- compute: forward (clamped), backward, all-reduce, update unless non-finite
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        if step < cfg.steps - cfg.decoder_steps:
            values = train_step(net, optimizer, batches, cfg, world, data.n_batches * data.batch_size, critic)
        else:  # the decoder phase: the last decoder_steps steps
            values = decoder_step(net, optimizer, batches, cfg, world)
        t2 = time.perf_counter()
        data_time += t1 - t0
        step_time += t2 - t0
        done = step + 1

        # ---- check: stop on NaN/inf, keeping the last good checkpoint untouched
        if not all(math.isfinite(v) for v in values):
            bar.close()
            if live is not None:
                live.end()
            kept = f"the last good checkpoint (step {last_ckpt}) is kept" if last_ckpt else "no checkpoint was written"
            raise TrainError(f"loss is {values[0]} at step {done}; stopped, {kept} in {out_dir}")

        # ---- log
        recent = (recent + [values])[-50:]
        if live is not None and done % cfg.log_every == 0:
            live.step = done
            for name, v in zip(TERMS, values, strict=True):
                live.log_metric(f"train/{name}", v)
            live.next_step()
        bar.update(1)
        if progress and rank == 0 and (done % 10 == 0 or done == cfg.steps):
            img_s = (done - start) * images_per_step / (time.perf_counter() - t_start)
            bar.set_postfix(loss=f"{values[0]:.1f}", img_s=f"{img_s:.0f}")

        # ---- checkpoint (rank 0), every checkpoint_every steps and at the end
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            # Timings stay out of the checkpoint so that its bytes depend on the seed alone.
            record = {k_: v for k_, v in summary(done).items() if k_ not in TIMINGS}
            extra = {
                "summary": record,
                "data": data_info,
                "world_size": world,
                "slots_per_step": slots_per_step,
                LOSS_WINDOW: recent,
            }
            aux = {} if critic is None else {"discriminator": critic[0], "discriminator_optimizer": critic[1]}
            save_checkpoint(out_dir, model, optimizer, cfg, done, extra, **aux)
            last_ckpt = done
    bar.close()

    result = summary(cfg.steps)
    if live is not None:
        for key, v in result.items():
            live.summary[key] = v
        live.end()
    if world > 1:
        dist.barrier()  # the final checkpoint is on disk before any rank returns
    return result
