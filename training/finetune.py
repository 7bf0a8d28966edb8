"""LoRA fine-tuning of the base LLM on chat examples, resumable and reproducible.

A plain loop rather than `transformers.Trainer`: we need exactly three things from it (loss on
the assistant's tokens only, checkpoints that survive a kill at any instant, bit-for-bit
resume), and a loop of ~100 lines makes all three visible and testable. Work lives under
`<state_dir>/training/work/<key>`, where the key hashes the data, the hyperparameters and the
base model: rerunning after a crash with the same inputs resumes, while any change starts over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.atomic import atomic_directory, atomic_write_json
from bot.config import Settings, TrainingConfig
from bot.errors import BotError
from training.dataset import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

LATEST = "latest.json"
IGNORE_INDEX = -100
HYPERPARAMS = (
    "lora_r", "lora_alpha", "lora_dropout", "target_modules", "epochs", "max_steps", "lr",
    "lr_schedule", "warmup_fraction", "max_length", "batch_size", "grad_accum", "seed",
)


class TrainingError(BotError):
    """Fine-tuning cannot start or continue; the served model is left as it was."""


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]

@dataclass
class FinetuneResult:
    adapter_dir: Path
    steps: int
    losses: list[tuple[int, float]]
    tokens: int
    wall_s: float
    device: str
    resumed_from: int = 0
    skipped_examples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0


def tokenize_chat(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], max_length: int
) -> TokenizedExample | None:
    """Token ids of the whole chat; labels only on the assistant's reply and its end token.

    The prompt is rendered with the generation prompt, exactly as serving renders it, so the
    model learns to continue from the very tokens it will see in production. None when the
    prompt alone does not fit: cutting the question would teach answers to unasked questions.
    """
    prompt_text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    if not isinstance(prompt_text, str) or not isinstance(full_text, str) or not full_text.startswith(prompt_text):
        raise TrainingError("the tokenizer's chat template does not render the prompt as a prefix of the chat")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    if len(prompt_ids) >= max_length - 1 or not reply_ids:
        return None
    reply_ids = reply_ids[: max_length - len(prompt_ids)]
    return TokenizedExample(prompt_ids + reply_ids, [IGNORE_INDEX] * len(prompt_ids) + reply_ids)


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase, example: Example, system: str, max_length: int, answer_chars: int
) -> TokenizedExample | None:
    """`tokenize_chat` of the example as served; entries that do not fit are dropped, farthest first.

    Serving would show all of them, but a grounded prompt cut short would teach answers to a
    question the model never saw; fewer entries is the nearest prompt that fits."""
    while True:
        tokenized = tokenize_chat(tokenizer, example.messages(system, answer_chars), max_length)
        if tokenized is not None or not example.grounding:
            return tokenized
        example = replace(example, grounding=example.grounding[:-1])


def collate(batch: list[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked from attention and loss."""
    import torch

    width = max(len(ex.input_ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ex in enumerate(batch):
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_losses(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed next-token loss over labelled positions, and how many positions that was.

    The vocabulary projection runs only on the answer positions: with a 49k-token vocabulary
    the float logits of a batch are the largest tensors in a step, and most of a chat prompt
    (system prompt, question) is never scored.
    """
    import torch.nn.functional as F

    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    parts = _decoder_and_head(model)
    if parts is None:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        scored = logits[:, :-1, :][keep].float()
    else:
        decoder, head = parts
        hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        scored = head(hidden[:, :-1, :][keep]).float()
    loss_sum = F.cross_entropy(scored, labels[keep], reduction="sum")
    return loss_sum, int(keep.sum())


def _decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """The transformer body and output projection, unless the model post-processes its logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    get_decoder = getattr(base, "get_decoder", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    decoder = get_decoder() if callable(get_decoder) else None
    if decoder is None or head is None or decoder is base:
        return None
    return decoder, head


def pick_device(setting: str) -> str:
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise TrainingError("training.device = 'cuda' but torch sees no GPU (use 'auto' or 'cpu')")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def work_key(cfg: TrainingConfig, data_hash: str, base_dir: Path, system_prompt: str, answer_chars: int = 700) -> str:
    params = {name: getattr(cfg, name) for name in HYPERPARAMS} | {"ground_answer_chars": answer_chars}
    blob = json.dumps(
        {"data": data_hash, "params": params, "base": str(base_dir.resolve()), "system": system_prompt},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def attach_lora(base: PreTrainedModel, cfg: TrainingConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        raise TrainingError(
            f"training.target_modules: {missing} not found in the base model "
            f"(its linear layers include {sorted(n for n in present if n.endswith('proj'))[:8]})"
        )
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora)


def _lr_lambda(total_steps: int, warmup_fraction: float, schedule: str = "constant") -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        remaining = max(1, total_steps - warmup)
        return max(0.0, 1.0 - (step - warmup) / remaining)

    return factor


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return order


def plan_steps(n_examples: int, cfg: TrainingConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps)."""
    micro = math.ceil(n_examples / cfg.batch_size)
    per_epoch = math.ceil(micro / cfg.grad_accum)
    total = per_epoch * cfg.epochs
    return per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total


class _Checkpoints:
    """Step folders staged under a temp name and renamed; `latest.json` is the commit point."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "checkpoints"

    def latest(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / LATEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        folder = self.root / str(data.get("dir", ""))
        return data if data.get("dir") and folder.is_dir() else None

    def save(self, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
        import torch

        name = f"step-{state['step']:06d}"
        with atomic_directory(self.dir / name) as tmp:
            model.save_pretrained(tmp)
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                },
                tmp / "trainer_state.pt",
            )
        atomic_write_json(self.root / LATEST, {**state, "dir": f"checkpoints/{name}", "complete": False})
        for old in self.dir.iterdir():
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)


def finetune(
    settings: Settings,
    train_examples: list[Example],
    *,
    base_dir: Path,
    data_hash: str,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on `train_examples`; resume from the last checkpoint of the same work."""
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    from bot.model_assets import load_causal_lm

    cfg = settings.training
    system = settings.domain.system_prompt
    root = settings.state_dir / "training" / "work" / work_key(
        cfg, data_hash, base_dir, system, settings.memory.ground_answer_chars
    )
    checkpoints = _Checkpoints(root)
    latest = checkpoints.latest()
    if latest and latest.get("complete"):
        log.info("fine-tune for this data and config already finished in %s; reusing it", root)
        return _result_from_state(root, latest)

    model, tokenizer = load_causal_lm(base_dir)
    answer_chars = settings.memory.ground_answer_chars
    tokenized = [tokenize_example(tokenizer, ex, system, cfg.max_length, answer_chars) for ex in train_examples]
    usable = [t for t in tokenized if t is not None]
    skipped = len(tokenized) - len(usable)
    if skipped:
        log.warning("%d example(s) skipped: their prompt alone exceeds training.max_length=%d",
                    skipped, cfg.max_length)
    if not usable:
        raise TrainingError("no example fits training.max_length; raise it or shorten the prompts")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    model = attach_lora(model, cfg).to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    per_epoch, total_steps = plan_steps(len(usable), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, cfg.warmup_fraction, cfg.lr_schedule))

    step, losses, tokens, prior_wall = 0, [], 0, 0.0
    if latest:
        ckpt = root / latest["dir"]
        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors"), device=device))
        trainer_state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        torch.set_rng_state(trainer_state["torch_rng"])
        if trainer_state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer_state["cuda_rng"])
        step, tokens, prior_wall = int(latest["step"]), int(latest["tokens"]), float(latest["wall_s"])
        losses = [(int(s), float(v)) for s, v in latest["losses"]]
        log.info("resuming fine-tune from step %d of %d (%s)", step, total_steps, ckpt)
    resumed_from = step

    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="fine-tune", unit="step", disable=not progress)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    try:
        while step < total_steps:
            epoch, index_in_epoch = divmod(step, per_epoch)
            order = epoch_order(len(usable), cfg.seed, epoch)
            first = index_in_epoch * cfg.grad_accum * cfg.batch_size
            chunk = order[first : first + cfg.grad_accum * cfg.batch_size]
            micro_batches = [
                collate([usable[i] for i in chunk[j : j + cfg.batch_size]], pad_id)
                for j in range(0, len(chunk), cfg.batch_size)
            ]
            step_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro_batches)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for batch in micro_batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                with autocast:
                    loss_sum, _ = token_losses(model, batch)
                (loss_sum / step_tokens).backward()
                step_loss += float(loss_sum.detach()) / step_tokens
                tokens += int(batch["attention_mask"].sum())
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append((step, step_loss))
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", epoch=epoch + 1)
            if step % cfg.checkpoint_every == 0 and step < total_steps:
                wall = prior_wall + time.perf_counter() - started
                checkpoints.save(model, optimizer, scheduler, _state(step, tokens, wall, losses, skipped))
            if on_step is not None:
                on_step(step, step_loss)
    finally:
        bar.close()
    wall = prior_wall + time.perf_counter() - started
    _save_final(root, model, _state(step, tokens, wall, losses, skipped) | {"device": device,
                                                                          "resumed_from": resumed_from})
    log.info("fine-tuned %d steps in %.0fs (%.0f tokens/s on %s), last loss %.3f",
             step, wall, tokens / wall if wall else 0, device, losses[-1][1] if losses else float("nan"))
    return _result_from_state(root, checkpoints.latest() or {})


def _state(step: int, tokens: int, wall: float, losses: list[tuple[int, float]], skipped: int) -> dict[str, Any]:
    return {"step": step, "tokens": tokens, "wall_s": wall, "losses": losses, "skipped": skipped}


def _save_final(root: Path, model: Any, state: dict[str, Any]) -> None:
    """The finished adapter, then `latest.json` marked complete; old checkpoints go last."""
    with atomic_directory(root / "adapter") as tmp:
        model.save_pretrained(tmp)
    atomic_write_json(root / LATEST, {**state, "dir": "adapter", "complete": True})
    shutil.rmtree(root / "checkpoints", ignore_errors=True)
    for sibling in root.parent.iterdir():  # work for older data or settings will not resume
        if sibling != root and sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)


def _result_from_state(root: Path, state: dict[str, Any]) -> FinetuneResult:
    return FinetuneResult(
        adapter_dir=root / "adapter",
        steps=int(state.get("step", 0)),
        losses=[(int(s), float(v)) for s, v in state.get("losses", [])],
        tokens=int(state.get("tokens", 0)),
        wall_s=float(state.get("wall_s", 0.0)),
        device=str(state.get("device", "cpu")),
        resumed_from=int(state.get("resumed_from", 0)),
        skipped_examples=int(state.get("skipped", 0)),
    )
