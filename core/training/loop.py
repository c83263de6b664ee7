"""The training loop shared by every recipe, on Lightning Fabric.

Fabric gives devices, bf16 autocast, DDP (gloo on CPU, NCCL on GPU, many machines via torchrun)
and loggers; the loop itself stays ours so that a resumed run is *exactly* the uninterrupted one:
data order, masks and the learning rate are functions of (seed, step), and checkpoints hold the
model and optimizer state (safetensors).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Iterator

import torch
from maskworks.core.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from maskworks.core.training.config import RecipeError, check_settings, save_config
from maskworks.core.training.task import StepContext, Task, load_task
from torch.utils.data import DataLoader, Sampler, default_collate

DEFAULTS = {
    "seed": 0, "max_steps": 100, "batch_size": 32, "accumulate": 1, "precision": "32-true",
    "accelerator": "auto", "devices": 1, "num_nodes": 1, "strategy": "auto", "num_workers": 0,
    "lr": 1.5e-4, "min_lr": 0.0, "warmup_steps": 0, "weight_decay": 0.05, "betas": [0.9, 0.95],
    "grad_clip": None, "log_every": 10, "ckpt_every": 50, "keep_checkpoints": 2, "threads": None,
}
POSITIVE = ("max_steps", "batch_size", "accumulate", "lr", "log_every", "ckpt_every")  # zero would never train


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's index lists, micro-step by micro-step, from ``start_step`` on.

    Step ``s`` uses global batch ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch``, whose
    order is a permutation seeded by (seed, epoch): no sampler state to save or restore.
    """

    def __init__(self, n: int, global_batch: int, accumulate: int, rank: int, world: int, seed: int,
                 start_step: int, max_steps: int) -> None:
        self.n, self.gb, self.acc, self.rank, self.world = n, global_batch, accumulate, rank, world
        self.seed, self.start, self.max_steps = seed, start_step, max_steps
        self.micro = global_batch // (accumulate * world)
        self.steps_per_epoch = n // global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"dataset has {n} samples, fewer than one batch of {global_batch}: "
                             "lower trainer.batch_size")

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        cached = (-1, None)
        for step in range(self.start, self.max_steps):
            epoch, b = divmod(step, self.steps_per_epoch)
            if cached[0] != epoch:
                cached = (epoch, self.order(epoch))
            batch = cached[1][b * self.gb:(b + 1) * self.gb]
            for j in range(self.acc):
                lo = (j * self.world + self.rank) * self.micro
                yield batch[lo:lo + self.micro].tolist()

    def __len__(self) -> int:
        return (self.max_steps - self.start) * self.acc


def learning_rate(step: int, tr: dict) -> float:
    """Linear warm-up then cosine decay to ``min_lr`` (a pure function of the step)."""
    base, warm, total = float(tr["lr"]), int(tr["warmup_steps"]), int(tr["max_steps"])
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(total - warm, 1)
    return float(tr["min_lr"]) + (base - float(tr["min_lr"])) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def step_generator(seed: int, step: int, micro: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 131 + micro) % (2**63))


def trainer_config(cfg: dict) -> dict:
    """The recipe's ``trainer`` section over :data:`DEFAULTS`, checked before anything runs: unknown
    keys and numbers that are not numbers are refused with the key's name."""
    # devices may also be "auto" or a list; strings and lists are Fabric's to check
    tr = check_settings("trainer", cfg.get("trainer"), DEFAULTS, free=("devices",))
    for key in POSITIVE:
        if tr[key] is not None and not tr[key] > 0:
            raise RecipeError(f"trainer.{key} must be above 0, got {tr[key]!r} (e.g. --set trainer.{key}={DEFAULTS[key]})")
    return tr


def check_model_settings(task: Task, seed: int) -> None:
    """Build the model once so that a mistyped or unknown ``model.*`` key is refused by name before a run
    folder exists (model classes raise ``TypeError`` on unknown keyword arguments)."""
    torch.manual_seed(seed)
    try:
        task.build_model()
    except TypeError as e:
        msg = str(e)
        raise RecipeError(f"the model settings do not fit {type(task).__name__} ({msg}); check the model section, "
                          f"e.g. --set model.KEY=VALUE with a KEY the model takes") from None


def fit(cfg: dict, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train ``cfg``'s task into ``run_dir``; with ``resume`` continue from its last checkpoint."""
    from lightning.fabric import Fabric
    from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

    tr = trainer_config(cfg)  # a bad setting is refused before the run folder exists
    task = load_task(cfg)
    task.check_recipe()
    if not (resume and latest_checkpoint(run_dir) is not None):
        check_model_settings(task, int(tr["seed"]))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    devices = tr["devices"]
    strategy = tr["strategy"]
    if strategy == "auto" and isinstance(devices, int) and devices > 1 and not torch.cuda.is_available():
        strategy = "ddp_spawn"  # CPU processes with gloo, no re-launch of the calling script
    # a resumed run logs into its own sub-folder, so the interrupted run's logs are kept
    ckpt = latest_checkpoint(run_dir) if resume else None
    version = f"resumed_from_{ckpt.name}" if ckpt is not None else ""
    loggers = [CSVLogger(str(run_dir), name="logs", version=version, flush_logs_every_n_steps=1),
               TensorBoardLogger(str(run_dir), name="tb", version=version)]
    fabric = Fabric(accelerator=tr["accelerator"], devices=devices, num_nodes=tr["num_nodes"], strategy=strategy,
                    precision=tr["precision"], loggers=loggers)
    result = fabric.launch(_fit, cfg, tr, run_dir, resume, progress)
    return result


def _fit(fabric, cfg: dict, tr: dict, run_dir: Path, resume: bool, progress: bool) -> dict:
    from tqdm.auto import tqdm

    if tr["threads"]:
        torch.set_num_threads(int(tr["threads"]))
    elif fabric.world_size > 1 and fabric.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // fabric.world_size))
    task: Task = load_task(cfg)
    torch.manual_seed(tr["seed"])  # model init
    model = task.build_model()
    start_step = 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if fabric.global_rank == 0:
        save_config(cfg, run_dir / "config.yaml")
    model = fabric.setup_module(model)
    optimizer = torch.optim.AdamW(task.param_groups(model.module, float(tr["weight_decay"])),
                                  lr=float(tr["lr"]), betas=tuple(tr["betas"]))
    if ckpt is not None:
        state = load_checkpoint(ckpt, model.module, optimizer)
        start_step = int(state["step"])
        fabric.print(f"resuming {run_dir} from step {start_step} ({ckpt.name})")
    elif resume:
        fabric.print(f"no checkpoint in {run_dir}: starting from step 0")
    optimizer = fabric.setup_optimizers(optimizer)

    dataset = task.build_dataset("train")
    world, acc = fabric.world_size, int(tr["accumulate"])
    gb = int(tr["batch_size"])
    if gb % (acc * world):
        raise ValueError(f"trainer.batch_size {gb} must be divisible by accumulate x devices = {acc * world}")
    max_steps = int(tr["max_steps"])
    sampler = StepBatchSampler(len(dataset), gb, acc, fabric.global_rank, world, int(tr["seed"]), start_step, max_steps)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=int(tr["num_workers"]), collate_fn=default_collate)
    batches = iter(loader)

    bar = tqdm(total=max_steps, initial=start_step, desc=cfg.get("name", "train"), unit="step",
               disable=not progress or fabric.global_rank != 0, dynamic_ncols=True)
    t0, last_loss = time.time(), float("nan")
    model.train()
    for step in range(start_step, max_steps):
        lr = learning_rate(step, tr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logs: dict[str, torch.Tensor] = {}
        for j in range(acc):
            batch = fabric.to_device(next(batches))
            ctx = StepContext(step=step, max_steps=max_steps, epoch=step // sampler.steps_per_epoch,
                              generator=step_generator(int(tr["seed"]), step, j), device=fabric.device,
                              rank=fabric.global_rank, world_size=world, local_batch=sampler.micro,
                              model=model.module)
            with fabric.no_backward_sync(model, enabled=j < acc - 1):
                out = task.training_step(model, batch, ctx)
                out = out if isinstance(out, dict) else {"loss": out}
                fabric.backward(out["loss"] / acc)
            for k, v in out.items():
                logs[k] = logs.get(k, 0) + v.detach().float() / acc
        if tr["grad_clip"]:
            fabric.clip_gradients(model, optimizer, max_norm=float(tr["grad_clip"]))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % int(tr["log_every"]) == 0 or done == max_steps:
            scalars = {f"train/{k}": float(fabric.all_reduce(v, reduce_op="mean")) for k, v in logs.items()}
            scalars["train/lr"] = lr
            fabric.log_dict(scalars, step=done)
            last_loss = scalars["train/loss"]
            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
        bar.update(1)
        if done % int(tr["ckpt_every"]) == 0 or done == max_steps:
            if fabric.global_rank == 0:
                save_checkpoint(run_dir, done, model.module, optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                                keep=int(tr["keep_checkpoints"]))
            fabric.barrier()
    bar.close()
    summary = {"steps": max_steps, "final_loss": last_loss, "seconds": round(time.time() - t0, 2),
               "world_size": world, "run_dir": str(run_dir)}
    if fabric.global_rank == 0:
        meta = {**task.model_config(), "steps": max_steps, "final_loss": last_loss}
        save_weights(model.module, run_dir / "model.safetensors", metadata=meta)
        model.eval()
        summary.update(task.on_fit_end(model.module, run_dir) or {})
    for logger in fabric.loggers:
        logger.finalize("success")
    return summary
