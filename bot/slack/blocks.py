"""Block Kit builders: pure functions from our values to Slack's JSON, tested without Slack.

Every text a customer reads passes through `escape_mrkdwn`, so a model answer containing `<`,
`>` or `&` can never turn into a broken link or a mass mention.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.config import ROUTES
from bot.interfaces import Answer, Source
from bot.slack import ids
from bot.slack.status import (
    UNANSWERED_DAYS,
    PendingReview,
    StaffStatus,
    UnansweredQuestion,
    UndeliveredAnswer,
)
from bot.training_record import TrainingRun

Block = dict[str, Any]

SECTION_LIMIT = 2900  # Slack rejects section text over 3000 characters
MAX_SOURCES = 5
THINKING_TEXT = "Thinking…"
POLITE_ERROR_TEXT = (
    "Sorry, something went wrong on my side while answering. Please try again in a moment; "
    "if it keeps happening, ask for a person and our team will help."
)
ROUTE_LABELS = {
    "domain": "expert model",
    "retrieval": "knowledge base",
    "escalate": "hand-off to a person",
}
VERIFIED_TEXT = "✔ Checked by our team: a person wrote or confirmed this answer."
VERDICT_LABELS = {"correct": "Correct", "incorrect": "Incorrect", "retracted": "Withdrawn"}


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters; everything else stays readable."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_text(text: str) -> str:
    return escape_mrkdwn(text).replace("|", "¦")


def split_for_sections(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Long answers become several sections, cut at paragraph, line or word boundaries."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind("\n\n", 0, limit), text.rfind("\n", 0, limit), text.rfind(" ", 0, limit))
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts or [""]


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text or " "}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _button(text: str, action_id: str, value: str, style: str = "") -> Block:
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def thinking_blocks() -> list[Block]:
    return [_context(f":hourglass_flowing_sand: {THINKING_TEXT}")]


def streaming_blocks(partial_text: str) -> list[Block]:
    """The answer so far while the model is still writing."""
    blocks = [_section(escape_mrkdwn(part)) for part in split_for_sections(partial_text)]
    return [*blocks[:45], _context(":writing_hand: still writing…")]


def confidence_line(answer: Answer) -> str:
    label = ROUTE_LABELS.get(answer.route, answer.route)
    return f"Route: *{answer.route}* ({label}) · confidence {answer.confidence:.0%}"


def source_line(source: Source) -> str:
    name = source.title or source.path or "source"
    if source.heading and source.heading != source.title:
        name = f"{name} › {source.heading}"
    shown = f"<{source.url}|{_link_text(name)}>" if source.url else f"*{escape_mrkdwn(name)}*"
    if not source.url and source.path:
        shown += f" ({escape_mrkdwn(source.path)})"
    if source.updated:
        shown += f" · updated {escape_mrkdwn(source.updated)}"
    return shown


def unique_sources(sources: list[Source]) -> list[Source]:
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for src in sources:
        key = (src.title, src.heading, src.url or src.path)
        if key not in seen:
            seen.add(key)
            kept.append(src)
    return kept[:MAX_SOURCES]


def answer_blocks(answer: Answer) -> list[Block]:
    """The answer, a context line with route and confidence, citations, and 👍/👎 buttons.

    Escalations get no vote buttons: the customer is already waiting for a person.
    """
    blocks = [_section(escape_mrkdwn(part)) for part in split_for_sections(answer.text)][:40]
    if answer.kind == "verified":
        blocks.append(_context(VERIFIED_TEXT))
    blocks.append(_context(confidence_line(answer)))
    sources = unique_sources(answer.sources)
    if sources:
        lines = "\n".join(f"• {source_line(src)}" for src in sources)
        blocks.append(_context(f"*Sources*\n{lines}"))
    if answer.turn_id is not None and answer.route != "escalate":
        value = str(answer.turn_id)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"feedback:{value}",
                "elements": [
                    _button("👍 Helpful", ids.FEEDBACK_UP, value),
                    _button("👎 Not helpful", ids.FEEDBACK_DOWN, value),
                ],
            }
        )
    return blocks


def answer_fallback_text(answer: Answer) -> str:
    """The notification and screen-reader text that goes with the blocks."""
    return answer.text[:3000] or " "


def rate_limited_text(limit_per_minute: int) -> str:
    return (
        f"You're asking faster than I can answer well (up to {limit_per_minute} questions a "
        "minute). Please wait a moment and ask again; I haven't forgotten you."
    )


def feedback_thanks_text() -> str:
    return "Thanks for letting us know! Your vote helps us improve the answers."


def downvote_followup_blocks(turn_id: int) -> list[Block]:
    """Offered after a 👎: the customer can reach a person in one click."""
    return [
        _section("Sorry that didn't help. Your vote is recorded. Would you like a person to follow up?"),
        {
            "type": "actions",
            "elements": [_button("Talk to a person", ids.TALK_TO_PERSON, str(turn_id), style="primary")],
        },
    ]


def escalation_blocks(
    *,
    question: str,
    would_have_said: str,
    asker: str,
    reason: str,
    permalink: str,
    read_as: str = "",
    no_answer_note: str = "",
) -> list[Block]:
    """The staff channel's notice: who asked what, where, and the bot's best guess. A follow-up
    shows how it was read with the conversation too, since "and how much is it?" alone says little.
    A "no checked answer" hand-off (`no_answer_note` set) says so, and shows what the bot found and
    why that was not enough, instead of a draft: the customer was told a person will answer."""
    quoted = f"*Question*\n>{escape_mrkdwn(question[:1500]).replace(chr(10), chr(10) + '>')}"
    if no_answer_note:
        blocks: list[Block] = [
            _section(f":mag: *<@{asker}> asked something the bot has no checked answer for.* They were told "
                     "the team will reply in the thread."),
            _section(quoted),
            _section(f"*What the bot found, and why it did not answer*\n{escape_mrkdwn(no_answer_note[:2500])}"),
            _context("Reply in the thread, then flag your reply with *Flag for retraining* (plant care) or add the "
                     "policy to knowledge/, so the next customer gets it."),
        ]
    else:
        blocks = [
            _section(f":raising_hand: *<@{asker}> needs a person.*"),
            _section(quoted),
            _section(f"*What the bot would have said*\n{escape_mrkdwn(would_have_said[:2500]) or '_(nothing)_'}"),
        ]
    if read_as:
        blocks.insert(2, _context(f"Read with the conversation as: {escape_mrkdwn(read_as[:1500])}"))
    if reason:
        blocks.append(_context(f"Why: {escape_mrkdwn(reason[:500])}"))
    if permalink:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the thread"},
                        "url": permalink,
                        "action_id": ids.OPEN_THREAD,
                    }
                ],
            }
        )
    return blocks


# --- the flag-for-retraining modal -----------------------------------------------------------


def _option(text: str, value: str) -> Block:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def flag_modal(*, turn_id: int, question: str, answer: str, route: str, channel: str, message_ts: str,
               read_as: str = "") -> Block:
    """Verdict, corrected answer, correct route and a note; the turn travels in private_metadata."""
    metadata = json.dumps({"turn_id": turn_id, "channel": channel, "message_ts": message_ts})
    route_options = [_option(f"{r} ({ROUTE_LABELS[r]})", r) for r in ROUTES]
    route_select: Block = {"type": "static_select", "action_id": ids.FLAG_ROUTE_ACTION, "options": route_options}
    if route in ROUTES:
        route_select["initial_option"] = route_options[ROUTES.index(route)]
    return {
        "type": "modal",
        "callback_id": ids.FLAG_VIEW,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": "Flag for retraining"},
        "submit": {"type": "plain_text", "text": "Save label"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _section(f"*Question*\n{escape_mrkdwn(question[:1200])}"
                     + (f"\n_Read with the conversation as (and learnt as):_ {escape_mrkdwn(read_as[:1200])}"
                        if read_as else "")),
            _section(f"*Bot answer* (route: {escape_mrkdwn(route)})\n{escape_mrkdwn(answer[:1500])}"),
            {
                "type": "input",
                "block_id": ids.FLAG_VERDICT_BLOCK,
                "label": {"type": "plain_text", "text": "Verdict"},
                "element": {
                    "type": "radio_buttons",
                    "action_id": ids.FLAG_VERDICT_ACTION,
                    "options": [
                        _option("Correct", "correct"),
                        _option("Incorrect", "incorrect"),
                        _option("Withdraw the earlier label on this answer", "retracted"),
                    ],
                },
            },
            {
                "type": "input",
                "block_id": ids.FLAG_CORRECTED_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Corrected answer"},
                "hint": {"type": "plain_text", "text": "What the bot should have said. Used for training."},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.FLAG_CORRECTED_ACTION,
                    "multiline": True,
                    "max_length": 3000,
                },
            },
            {
                "type": "input",
                "block_id": ids.FLAG_ROUTE_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Route that should have answered"},
                "element": route_select,
            },
            {
                "type": "input",
                "block_id": ids.FLAG_NOTE_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Note for the team"},
                "element": {"type": "plain_text_input", "action_id": ids.FLAG_NOTE_ACTION, "max_length": 1000},
            },
        ],
    }


@dataclass(frozen=True)
class FlagSubmission:
    turn_id: int
    channel: str
    message_ts: str
    verdict: str
    corrected_answer: str
    correct_route: str
    note: str


def parse_flag_submission(view: dict[str, Any]) -> tuple[FlagSubmission | None, dict[str, str]]:
    """The modal's values, or errors keyed by block id for Slack to show beside the fields."""
    values = view.get("state", {}).get("values", {})

    def picked(block: str, action: str) -> str:
        element = values.get(block, {}).get(action, {}) or {}
        option = element.get("selected_option") or {}
        return str(option.get("value") or "")

    def typed(block: str, action: str) -> str:
        element = values.get(block, {}).get(action, {}) or {}
        return str(element.get("value") or "").strip()

    errors: dict[str, str] = {}
    verdict = picked(ids.FLAG_VERDICT_BLOCK, ids.FLAG_VERDICT_ACTION)
    corrected = typed(ids.FLAG_CORRECTED_BLOCK, ids.FLAG_CORRECTED_ACTION)
    route = picked(ids.FLAG_ROUTE_BLOCK, ids.FLAG_ROUTE_ACTION)
    note = typed(ids.FLAG_NOTE_BLOCK, ids.FLAG_NOTE_ACTION)
    if verdict not in VERDICT_LABELS:
        errors[ids.FLAG_VERDICT_BLOCK] = "Choose correct, incorrect or withdraw."
    if route and route not in ROUTES:
        errors[ids.FLAG_ROUTE_BLOCK] = "Choose domain, retrieval or escalate."
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        turn_id = int(meta["turn_id"])
    except (ValueError, KeyError, TypeError):
        errors[ids.FLAG_VERDICT_BLOCK] = "This form lost track of the answer; close it and flag the answer again."
        return None, errors
    if errors:
        return None, errors
    return (
        FlagSubmission(
            turn_id=turn_id,
            channel=str(meta.get("channel", "")),
            message_ts=str(meta.get("message_ts", "")),
            verdict=verdict,
            corrected_answer=corrected,
            correct_route=route,
            note=note,
        ),
        {},
    )


def label_saved_text(
    submission: FlagSubmission,
    *,
    answered_route: str = "",
    memory_on: bool = False,
    reuse_policy: bool = False,
    policy_files: Sequence[str] = (),
) -> str:
    """What the label does, now and at the next training run, in the staff member's words."""
    if submission.verdict == "retracted":
        return ("Label withdrawn: this answer is out of the expert memory now, and out of the next "
                "training run.")
    parts = [f"Label saved: *{VERDICT_LABELS[submission.verdict].lower()}*"]
    if submission.correct_route:
        parts.append(f"route should be *{submission.correct_route}*")
    if submission.corrected_answer:
        parts.append("with a corrected answer")
    text = ", ".join(parts) + "."
    route = submission.correct_route or answered_route
    vouches = submission.verdict == "correct" or bool(submission.corrected_answer)
    if memory_on and vouches and (route == "domain" or (route == "retrieval" and reuse_policy)):
        said = "your answer" if submission.verdict == "incorrect" else "this answer"
        text += f" The next customer who asks this gets {said} as written (expert memory), from now on."
    elif route == "retrieval" and submission.verdict == "incorrect":
        where = ", ".join(f"`{p}`" for p in policy_files) or "the policy file in `knowledge/`"
        text += (f" Policy answers come from the knowledge base, so fix {where}: every answer that quotes "
                 "it changes within seconds. Your correction is not repeated to customers as written, "
                 "because policies change.")
    return text + " It will be used in the next training run."


# --- App Home and status ---------------------------------------------------------------------


def _counts_line(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "none yet"
    per_route = ", ".join(f"{route} {counts.get(route, 0)}" for route in ROUTES if counts.get(route))
    return f"{total} ({per_route})"


def votes_line(votes: dict[str, int]) -> str:
    up, down = votes.get("up", 0), votes.get("down", 0)
    if not up + down:
        return "no votes yet"
    return f"👍 {up} / 👎 {down} ({up / (up + down):.0%} helpful)"


def training_line(run: TrainingRun | None) -> str:
    if run is None:
        return "no training run has finished yet"
    outcome = f"promoted *{run.version}*" if run.promoted else "kept the serving model (gate not passed)"
    line = f"{escape_mrkdwn(run.finished_at or 'unknown time')}: {outcome}"
    if run.summary:
        line += f"\n{escape_mrkdwn(run.summary[:1500])}"
    return line


def status_sections(status: StaffStatus) -> list[str]:
    return [
        f"*Answers today:* {_counts_line(status.answers_today)}",
        f"*Customer votes today:* {votes_line(status.votes_today)}",
        f"*Serving:* model adapter {status.model_version or 'base (no adapter)'} · "
        f"router {status.router_version or 'seed (untrained)'}",
        f"*Last training run:* {training_line(status.last_training)}",
        f"*Staff labels waiting for the next training run:* {status.labels_waiting}",
        *([f"*Expert memory:* {status.memory_entries} answers the team vouches for (seed file, corrections, "
           "answers marked correct), used at once"] if status.memory_entries is not None else []),
    ]


def unanswered_line(item: UnansweredQuestion) -> str:
    where = f" in <#{item.slack_channel}>" if item.slack_channel else ""
    asked = item.read_as or item.question
    note = item.note.splitlines()[0] if item.note else ""
    return (f"• turn {item.turn_id}{where}: _{escape_mrkdwn(asked[:150])}_"
            + (f"\n   {escape_mrkdwn(note[:220])}" if note else ""))


def status_text(status: StaffStatus) -> str:
    lines = status_sections(status)
    lines.append(f"*Handed off with no checked answer (last {UNANSWERED_DAYS} days):* {status.unanswered_count}")
    lines.extend(unanswered_line(item) for item in status.unanswered[:5])
    lines.append(f"*Answers awaiting review (👎, unlabeled):* {len(status.pending)}")
    if status.undelivered_count:
        lines.append(f"*Answers Slack has not taken yet (in the log, being re-posted or given up):* "
                     f"{status.undelivered_count}")
        lines.extend(undelivered_line(item) for item in status.undelivered)
    return "\n".join(lines)


def undelivered_line(item: UndeliveredAnswer) -> str:
    state = "given up" if item.delivery == "failed" else f"retrying, {item.attempts} attempt(s)"
    where = f"<#{item.slack_channel}>" if item.slack_channel else "unknown channel"
    return (f"• turn {item.turn_id} in {where} ({state}; {escape_mrkdwn(item.error[:120])}): "
            f"_{escape_mrkdwn(item.question[:150])}_")


def _pending_block(item: PendingReview) -> Block:
    where = f" in <#{item.slack_channel}>" if item.slack_channel else ""
    return {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": f"*{escape_mrkdwn(item.question[:200])}*{where}\n"
            f"_{escape_mrkdwn(item.route)}:_ {escape_mrkdwn(item.answer[:300])}",
        },
        "accessory": _button("Review", ids.REVIEW_FROM_HOME, str(item.turn_id)),
    }


def staff_home_view(status: StaffStatus, company: str) -> Block:
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{company} support bot: staff"}},
        *(_section(line) for line in status_sections(status)),
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Pending flags to review"}},
    ]
    if status.pending:
        blocks.extend(_pending_block(item) for item in status.pending)
    else:
        blocks.append(_context("Nothing to review: no unlabeled answers with a 👎."))
    blocks.append({"type": "divider"})
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "No checked answer yet"}})
    if status.unanswered:
        blocks.append(_section(
            f"{status.unanswered_count} question(s) in the last {UNANSWERED_DAYS} days went to a person because "
            "nothing the bot may quote answered them. Reply in the thread, then *Flag for retraining* your "
            "answer (plant care), or add the policy to `knowledge/`, so the next customer gets it.\n"
            + "\n".join(unanswered_line(item) for item in status.unanswered)[:2700]
        ))
    else:
        blocks.append(_context(f"Every question of the last {UNANSWERED_DAYS} days had a checked answer or "
                               "needed a person anyway."))
    if status.undelivered_count:
        blocks.append({"type": "divider"})
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Answers not delivered"}})
        blocks.append(_section(
            f"{status.undelivered_count} answer(s) are in the log but Slack has not taken them; pending ones "
            "are re-posted automatically, given-up ones need a person to reply in the thread.\n"
            + "\n".join(undelivered_line(item) for item in status.undelivered)[:2700]
        ))
    blocks.append(
        _context(
            "Label any bot answer with the message shortcut *Flag for retraining*, or react with the "
            "correct / incorrect emoji. `/supportbot train` starts a training run."
        )
    )
    return {"type": "home", "blocks": blocks[:100]}


def customer_home_view(company: str) -> Block:
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{company} support"}},
            _section(
                "Ask me anything about our plants and your orders: mention me in a channel or send "
                "me a direct message. I answer in the thread; reply there to follow up."
            ),
            _section(
                "Under each answer, 👍 / 👎 tells us whether it helped. After a 👎 you can ask for a "
                "person, or just say you'd like to talk to someone."
            ),
        ],
    }
