"""Assemble the Slack app: services from settings, then a Bolt `App` with every listener.

Bolt's sync `App` fits the rest of the product: the pipeline, the conversation log and the Web
API client are all blocking, and Bolt acks events before running listeners on its executor.
The heavy part (the answer) then moves to our own bounded pool, so a burst of questions queues
with its "Thinking…" already shown instead of holding Bolt's threads.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.slack import listeners
from bot.slack.answer_service import AnswerService, AnswersQuestions
from bot.slack.client import build_web_client
from bot.slack.delivery import DeliveryRetrier
from bot.slack.escalation import StaffNotifier
from bot.slack.jobs import BackgroundJobs
from bot.slack.middleware import QuestionRateLimiter, StaffDirectory

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]
LISTENER_THREADS = 8  # claim + placeholder per event: short I/O-bound work; fewer threads leave the GIL to acks


def load_training_job() -> TrainFn:
    module = importlib.import_module("training.run")
    return module.run_training


@dataclass
class SlackServices:
    """Everything the listeners share; built once per process, drained on shutdown."""

    settings: Settings
    pipeline: AnswersQuestions
    store: ConversationStore
    client: WebClient
    staff: StaffDirectory
    limiter: QuestionRateLimiter
    notifier: StaffNotifier
    answers: AnswerService
    jobs: BackgroundJobs
    knowledge: Any
    memory: Any  # bot.memory.ExpertMemory, or None (memory off, or tests without one)
    load_trainer: Callable[[], TrainFn]
    listener_executor: ThreadPoolExecutor
    answer_executor: ThreadPoolExecutor
    preview_executor: ThreadPoolExecutor
    delivery: DeliveryRetrier

    def drain(self) -> None:
        """Finish every accepted question before exit: a claimed event has no second chance.

        Call after the server stopped taking requests; listeners finish first because they
        queue answers.
        """
        log.info("finishing accepted questions before shutdown")
        self.listener_executor.shutdown(wait=True)
        self.answer_executor.shutdown(wait=True)
        self.preview_executor.shutdown(wait=True)
        self.delivery.stop()  # undelivered answers stay pending in the log; the next process re-posts them


def build_services(
    settings: Settings,
    pipeline: AnswersQuestions,
    store: ConversationStore,
    *,
    client: WebClient | None = None,
    knowledge: Any = None,
    memory: Any = None,
    load_trainer: Callable[[], TrainFn] = load_training_job,
) -> SlackServices:
    cfg = settings.slack
    client = client or build_web_client(settings)
    staff = StaffDirectory(client, cfg.staff_user_ids, cfg.staff_usergroup, cfg.staff_cache_s)
    limiter = QuestionRateLimiter(store, cfg.rate_limit_per_minute)
    notifier = StaffNotifier(client, store, cfg.staff_channel)
    listener_executor = ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="slack-listener")
    answer_executor = ThreadPoolExecutor(cfg.answer_workers, thread_name_prefix="slack-answer")
    preview_executor = ThreadPoolExecutor(2, thread_name_prefix="slack-preview")
    answers = AnswerService(
        pipeline=pipeline,
        store=store,
        client=client,
        limiter=limiter,
        notifier=notifier,
        answer_executor=answer_executor,
        preview_executor=preview_executor,
        stream_interval_s=cfg.stream_update_interval_s,
        rate_limit_per_minute=cfg.rate_limit_per_minute,
        event_retention_s=cfg.event_retention_days * 86400.0,
        delivery_retry_s=cfg.delivery_retry_s,
    )
    delivery = DeliveryRetrier(
        answers,
        store,
        poll_s=cfg.delivery_poll_s,
        retry_s=cfg.delivery_retry_s,
        retry_max_s=cfg.delivery_retry_max_s,
        give_up_s=cfg.delivery_give_up_hours * 3600.0,
    ).start()
    return SlackServices(
        settings=settings,
        pipeline=pipeline,
        store=store,
        client=client,
        staff=staff,
        limiter=limiter,
        notifier=notifier,
        answers=answers,
        jobs=BackgroundJobs(),
        knowledge=knowledge,
        memory=memory,
        load_trainer=load_trainer,
        listener_executor=listener_executor,
        answer_executor=answer_executor,
        preview_executor=preview_executor,
        delivery=delivery,
    )


def build_app(
    settings: Settings,
    pipeline: AnswersQuestions,
    store: ConversationStore,
    *,
    client: WebClient | None = None,
    knowledge: Any = None,
    services: SlackServices | None = None,
) -> App:
    """A Bolt App wired to our listeners; `auth.test` runs now, so a bad token fails at start."""
    services = services or build_services(settings, pipeline, store, client=client, knowledge=knowledge)
    secret = settings.secrets.slack_signing_secret
    app = App(
        client=services.client,
        # Passed explicitly (even empty, for Socket Mode) so Bolt never reads the environment itself.
        signing_secret=secret.get_secret_value() if secret is not None else "",
        process_before_response=False,
        listener_executor=services.listener_executor,
        logger=logging.getLogger("slack_bolt"),
        name="supportbot",
    )
    listeners.register(app, services)
    return app
