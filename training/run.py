"""One training run: export → fine-tune → evaluate → gate → GGUF copy + check → register/promote → retrain router.

Called by `supportbot train run`, the scheduler and Slack's `/supportbot train` (in a
background thread). One run at a time per state directory (a file lock, so a second process
is refused too, not only a second thread). The served adapter changes in exactly one place,
`ArtifactRegistry.promote`, after everything else succeeded: a run that crashes or is killed
anywhere before that leaves customers on the model they had.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bot.config import Settings
from bot.errors import BotError
from bot.registry import adapter_registry
from bot.training_record import TrainingRun, last_training_run, write_last_training_run

if TYPE_CHECKING:
    from bot.conversation_log import ConversationStore

log = logging.getLogger(__name__)

Status = Literal["promoted", "rejected", "skipped", "busy", "failed"]
LOCK = "train.lock"


@dataclass
class TrainingOutcome:
    status: Status
    summary: str
    version: str | None = None
    report_path: Path | None = None
    run_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"


def training_dir(settings: Settings) -> Path:
    return settings.state_dir / "training"


def new_labels_since(store: ConversationStore, labels_until: str | None) -> tuple[int, datetime | None]:
    """Staff labels that arrived after the last completed run's export (None: never ran)."""
    if not labels_until:
        return store.count_labels_since(None), None
    since = datetime.fromisoformat(labels_until)
    return store.count_labels_since(since), since


def run_training(
    settings: Settings,
    *,
    store: ConversationStore | None = None,
    notify: Callable[[str], None] | None = None,
    force: bool = False,
    progress: bool = False,
) -> TrainingOutcome:
    """Run the whole loop once. Without `force`, too few new staff labels skip the run.

    The first run ever always proceeds (the seed dataset is new). Returns an outcome for every
    expected situation; a `BotError` inside becomes status "failed" with its message.
    """
    from filelock import FileLock, Timeout

    tdir = training_dir(settings)
    tdir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(tdir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        outcome = TrainingOutcome("busy", "a training run is already in progress; try again when it finishes")
        _tell(notify, outcome.summary)
        return outcome
    owns_store = store is None
    try:
        if store is None:
            from bot.conversation_log.opening import open_store

            store = open_store(settings)
        return _run_locked(settings, store, notify, force, progress)
    finally:
        if owns_store and store is not None:
            store.close()
        lock.release()


def _run_locked(
    settings: Settings, store: ConversationStore, notify: Callable[[str], None] | None, force: bool,
    progress: bool,
) -> TrainingOutcome:
    cfg = settings.training
    previous = last_training_run(settings)
    labels_before = previous.labels_until if previous else None
    new_labels, since = new_labels_since(store, labels_before)
    if not force and since is not None and new_labels < cfg.min_new_labels:
        summary = (f"skipped: {new_labels} new staff label(s) since {since:%Y-%m-%d %H:%M} UTC, "
                   f"training.min_new_labels is {cfg.min_new_labels}")
        log.info("training %s", summary)
        return TrainingOutcome("skipped", summary)

    started = datetime.now(UTC)
    run_dir = training_dir(settings) / "runs" / started.strftime("%Y%m%dT%H%M%S%fZ")
    try:
        outcome = _train_evaluate_promote(settings, store, run_dir, started, new_labels, progress)
    except BotError as exc:
        log.error("training run failed: %s (the served model is unchanged)", exc)
        outcome = TrainingOutcome("failed", f"failed: {exc} (the served model is unchanged)", run_dir=run_dir)
        _write_last_run(settings, outcome, labels_until=labels_before)
        _tell(notify, outcome.summary)
        return outcome
    except BaseException as exc:
        # A bug or Ctrl-C: record it for the App Home, keep serving, and let it surface.
        failed = TrainingOutcome("failed", f"failed: {type(exc).__name__}: {exc}", run_dir=run_dir)
        _write_last_run(settings, failed, labels_until=labels_before)
        raise
    _write_last_run(settings, outcome, labels_until=started.isoformat())
    _tell(notify, outcome.summary)
    return outcome


def _train_evaluate_promote(
    settings: Settings, store: ConversationStore, run_dir: Path, started: datetime, new_labels: int,
    progress: bool,
) -> TrainingOutcome:
    from bot.llm.gguf_check import write_and_check_gguf
    from bot.model_assets import base_llm_dir, configure_torch_threads, force_offline, load_embedder
    from training.dataset import export_dataset
    from training.evaluate import evaluate_adapters
    from training.finetune import finetune
    from training.gate import decide
    from training.report import write_report

    force_offline()
    configure_torch_threads(settings)
    cfg = settings.training
    grounded = cfg.grounded and settings.memory.enabled
    # One MiniLM for the grounding and the router retrain (each loaded its own before).
    embedder = load_embedder(settings) if grounded or cfg.retrain_router else None
    grounder = _grounder(settings, store, embedder) if grounded else None
    export = export_dataset(settings, store, run_dir / "data", grounder=grounder)
    base_dir = base_llm_dir(settings)
    tuned = finetune(settings, export.train, base_dir=base_dir, data_hash=export.data_hash, progress=progress)

    registry = adapter_registry(settings)
    served = registry.current()
    served_name = f"served {served.version}" if served else "served"
    adapters: dict[str, Path | None] = {"base": None}
    if served is not None:
        adapters[served_name] = served.path
    adapters["candidate"] = tuned.adapter_dir
    results = evaluate_adapters(settings, base_dir, export.eval, adapters)
    reference = results[served_name] if served is not None else results["base"]
    decision = decide(results["candidate"], reference, cfg)
    gguf = write_and_check_gguf(settings, tuned.adapter_dir, base_dir)
    if gguf.blocks_promotion:
        decision = replace(decision, promote=False, reasons=[*decision.reasons, f"GGUF copy failed: {gguf.reason}"])

    metrics = {name: r.summary() for name, r in results.items()}
    finetune_info = {
        "steps": tuned.steps, "resumed_from": tuned.resumed_from, "device": tuned.device,
        "wall_s": round(tuned.wall_s, 1), "tokens_per_s": round(tuned.tokens_per_s, 1),
        "final_loss": tuned.losses[-1][1] if tuned.losses else None,
    }
    version = registry.add(tuned.adapter_dir, {
        "kind": "lora-adapter",
        "data_hash": export.data_hash,
        "data": export.report,
        "base_model": str(base_dir),
        "system_prompt": settings.domain.system_prompt,
        "config": cfg.model_dump(mode="json"),
        "finetune": finetune_info,
        "metrics": metrics,
        "gate": {"promote": decision.promote, "reference": decision.reference, "reasons": decision.reasons},
        "gguf": gguf.as_metadata(),
        **({"blocked": f"its GGUF copy failed the llama.cpp check: {gguf.reason}"} if gguf.blocks_promotion else {}),
        "run_dir": str(run_dir),
        "new_labels": new_labels,
    })
    report_path = write_report(
        run_dir,
        title=f"Training run {started:%Y-%m-%d %H:%M} UTC → {version.version}",
        data_report=export.report,
        finetune=finetune_info,
        losses=tuned.losses,
        results=results,
        decision=decision,
        metric=cfg.answer_metric,
        version=version.version,
        promoted=decision.promote,
    )
    if decision.promote:
        registry.promote(version.version)  # the one step that changes what is served
    router_note = _retrain_router(settings, store, embedder) if cfg.retrain_router else ""
    cand = results["candidate"]
    head = (f"promoted adapter {version.version}" if decision.promote
            else f"kept {served.version if served else 'the base model'} ({version.version} not promoted)")
    summary = (f"Training {head}: {'; '.join(decision.reasons)}. "
               f"{len(export.train)} train / {len(export.eval)} eval examples, "
               f"{tuned.steps} steps in {tuned.wall_s:.0f}s; candidate {cfg.answer_metric} "
               f"{cand.metric(cfg.answer_metric):.3f}.{router_note}")
    return TrainingOutcome(
        "promoted" if decision.promote else "rejected",
        summary,
        version=version.version,
        report_path=report_path,
        run_dir=run_dir,
        metrics=metrics,
    )


def _grounder(settings: Settings, store: ConversationStore, embedder: Any) -> Any:
    """Grounds examples in the expert memory's entries, as served."""
    from training.grounding import Grounder, memory_notes, question_embedder

    return Grounder.from_settings(settings, memory_notes(settings, store), question_embedder(embedder))


def _retrain_router(settings: Settings, store: ConversationStore, embedder: Any) -> str:
    """Retrain the router from staff route labels; its failure never undoes the adapter step."""
    from training.router_training import train_router

    try:
        result = train_router(settings, embedder=embedder, store=store, promote=True)
    except BotError as exc:
        log.warning("router retraining failed: %s (the served router is unchanged)", exc)
        return f" Router retraining failed: {exc}."
    version = getattr(result, "version", None)
    f1 = getattr(result, "cv_macro_f1", None)
    detail = ", ".join(part for part in (
        str(version) if version else "",
        f"cross-validated macro-F1 {f1:.2f}" if isinstance(f1, float) else "",
        "" if getattr(result, "promoted", True) else "not promoted",
    ) if part)
    return f" Router retrained{f' ({detail})' if detail else ''}."


def _write_last_run(settings: Settings, outcome: TrainingOutcome, *, labels_until: str | None) -> None:
    write_last_training_run(settings, TrainingRun(
        finished_at=datetime.now(UTC).isoformat(),
        promoted=outcome.promoted,
        version=outcome.version or "",
        summary=outcome.summary,
        report_path=str(outcome.report_path) if outcome.report_path else "",
        metrics=outcome.metrics,
        status=outcome.status,
        labels_until=labels_until,
    ))


def _tell(notify: Callable[[str], None] | None, message: str) -> None:
    if notify is None:
        return
    try:
        notify(message)
    except Exception:  # a Slack outage must not turn a finished run into a failed one
        log.exception("could not deliver the training result notification")
