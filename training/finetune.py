"""The fine-tuning loop: ``"gradual"``, ``"full"`` and ``"lora"`` modes, after an optional LP-FT probe.

With ``linear_probe`` set, the head is first fitted on frozen embeddings exactly as ``"frozen"`` mode does
(:func:`training.frozen.train_frozen`; Kumar et al. 2022): the encoder then starts from a trained head
instead of a random one, which distorts the pretrained features less, and the probe counts as epoch 0 for
early stopping, so a fine-tune never keeps weights that validate worse than the frozen encoder. Then each
phase of :func:`training.optimizer.phases` trains with its own AdamW optimizer and schedule, gradient
accumulation and clipping; patience counts only in the last phase.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from training.frozen import train_frozen
from training.heads import head_logits, macro_f1
from training.optimizer import linear_schedule, param_groups, phases, set_trainable, step_entry, windows
from training.run_state import BestEpoch, RunState, TrainingLog, loss_fn, targets, val_loss

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.finetune needs PyTorch (pip install torch).") from exc


def _probe(run: RunState, best: BestEpoch) -> None:
    """The LP-FT probe: fit the head on frozen embeddings, record it as epoch 0 (its own steps stay out
    of the run's log)."""
    probe = TrainingLog()
    run.model.eval()
    f1, loss = train_frozen(replace(run, log=probe), span=(0.0, 0.15))
    run.log.epochs.append(
        {
            "epoch": 0,
            "phase": "probe",
            "val_loss": loss,
            "val_macro_f1": f1,
            "probe_epochs": len(probe.epochs),
        }
    )
    best.update(f1, loss, 0, run.model)


def train_finetune(run: RunState) -> None:
    """Fine-tune ``run.model`` in ``run.mode``; the best epoch's weights are loaded and frozen at the end."""
    model, encoder, config, task, tracker, log = (
        run.model,
        run.encoder,
        run.config,
        run.task,
        run.tracker,
        run.log,
    )
    best = BestEpoch()
    start = 0.02
    if config.linear_probe:
        _probe(run, best)
        start = 0.15
    peft_model = None
    if run.mode == "lora":
        from peft import LoraConfig, get_peft_model

        lora_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            bias="none",
        )
        # Injects the adapters into classifier.encoder in place (the wrapper is kept only to merge later).
        peft_model = get_peft_model(model.encoder, lora_config)
    plan = phases(model, run.mode, config)
    encoded = encoder.tokenize(run.train_texts)
    train_targets = targets(run.y_train, task).to(encoder.device)
    criterion = loss_fn(task)
    rng = np.random.default_rng(config.seed)
    n_train = len(run.train_texts)
    windows_per_epoch = math.ceil(math.ceil(n_train / config.batch_size) / config.grad_accum_steps)
    total_steps = sum(p.epochs for p in plan) * windows_per_epoch
    step = 0
    epoch = 0
    for p_index, phase in enumerate(plan):
        trainable = {n for names in phase.units.values() for n in names}
        set_trainable(model, trainable)
        log.trainable.update(trainable)
        groups, summary = param_groups(model, phase, config.weight_decay)
        log.optimizer_groups.extend(summary)
        optimizer = torch.optim.AdamW(groups)
        scheduler = linear_schedule(optimizer, phase.epochs * windows_per_epoch, config.warmup_ratio)
        params = [p for g in groups for p in g["params"]]
        last_phase = p_index == len(plan) - 1
        for _ in range(phase.epochs):
            epoch += 1
            model.train()
            losses = []
            for window in windows(rng.permutation(n_train), config.batch_size, config.grad_accum_steps):
                n_window = sum(len(rows) for rows in window)
                window_loss = 0.0
                for rows in window:
                    tracker.check()
                    logits = model(encoder.pad(encoded, rows.tolist()))
                    # Weight each micro-batch by its size so the step's loss is the window's mean.
                    loss = criterion(logits, train_targets[rows]) * (len(rows) / n_window)
                    loss.backward()
                    window_loss += float(loss.detach())
                grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                log.steps.append(step_entry(step, phase.name, epoch, window_loss, grad_norm, optimizer))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(window_loss)
                step += 1
                tracker.report(
                    start + (0.92 - start) * step / total_steps,
                    "training",
                    f"phase {phase.name}, epoch {epoch}, step {step}",
                )
            model.eval()
            val_logits = head_logits(
                model.head,
                encoder.embed(
                    run.val_texts, batch_size=config.eval_batch_size, progress=lambda d, t: tracker.check()
                ),
            )
            f1, epoch_val_loss = macro_f1(run.y_val, val_logits, task), val_loss(val_logits, run.y_val, task)
            log.epochs.append(
                {
                    "epoch": epoch,
                    "phase": phase.name,
                    "train_loss": float(np.mean(losses)),
                    "val_loss": epoch_val_loss,
                    "val_macro_f1": f1,
                }
            )
            tracker.report(
                start + (0.92 - start) * step / total_steps,
                "evaluating",
                f"epoch {epoch}: val macro-F1 {f1:.3f}",
            )
            best.update(f1, epoch_val_loss, epoch, model)
            # Patience runs only once everything is unfrozen: earlier phases are warm-up by design.
            if last_phase and epoch - best.epoch >= config.patience:
                break
    # The probe's snapshot (epoch 0) predates the LoRA adapters: it loads after they are folded away.
    probe_won = best.epoch == 0
    if best.state is not None and not (probe_won and peft_model is not None):
        model.load_state_dict(best.state)
    if peft_model is not None:
        # Fold the adapters into the base weights: the version is then a plain encoder + head.
        model.encoder = peft_model.merge_and_unload()
        encoder.model = model.encoder
        if probe_won and best.state is not None:
            model.load_state_dict(best.state)
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()
    encoder.invalidate_fingerprint()
    log.best_epoch = best.epoch
