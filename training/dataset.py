"""Training data: staff-labeled turns plus the seed dataset, redacted, de-duplicated and split.

Only staff labels ever reach training data: a customer's thumbs-down says an answer was bad but
not what a good one is. Redaction happens before anything touches disk, because a training set
is copied around (checkpoints, registry, GPU boxes) far more freely than the conversation log.
The train/eval split is decided by a hash of the normalised question, not by position, so a
question stays on its side of the split as the data grows week by week: otherwise last week's
training questions would leak into this week's held-out set and flatter the candidate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.atomic import atomic_write_json, atomic_write_text
from bot.config import Settings
from bot.errors import BotError
from bot.memory.framing import without_similar_frame
from bot.memory.grounding import Note, grounded_messages
from bot.memory.matching import canonical_question

if TYPE_CHECKING:
    from bot.conversation_log import ConversationStore
    from training.grounding import Grounder

log = logging.getLogger(__name__)

SOURCE_SEED = "seed"
SOURCE_CORRECT = "staff_correct"
SOURCE_CORRECTED = "staff_corrected"
SOURCE_PRIORITY = {SOURCE_SEED: 0, SOURCE_CORRECT: 1, SOURCE_CORRECTED: 2}


class DatasetError(BotError):
    """The training data cannot be read or is empty; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    """One chat exchange to learn from: optional system prompt, a question, the answer."""

    question: str
    answer: str
    source: str
    system: str = ""
    route: str = "domain"
    turn_id: int | None = None  # the logged turn a staff label made this from (erasure finds it by it)
    # Expert entries the served prompt would carry for this question, nearest first (never the
    # example's own entry: `training.grounding`). Empty: the bare prompt, as served when none is near.
    grounding: tuple[Note, ...] = ()

    def prompt_messages(self, default_system: str, answer_chars: int = 700) -> list[dict[str, str]]:
        """The messages the model is served for this question: the domain answerer's own builder."""
        system = self.system or default_system
        if self.grounding:
            return grounded_messages(system, self.question, self.grounding, answer_chars)
        out = [{"role": "system", "content": system}] if system else []
        out.append({"role": "user", "content": self.question})
        return out

    def messages(self, default_system: str, answer_chars: int = 700) -> list[dict[str, str]]:
        return [*self.prompt_messages(default_system, answer_chars), {"role": "assistant", "content": self.answer}]

    def to_json(self) -> dict[str, Any]:
        msgs = replace(self, grounding=()).messages("")
        row: dict[str, Any] = {"messages": msgs, "source": self.source, "route": self.route}
        if self.turn_id is not None:
            row["turn_id"] = self.turn_id
        if self.grounding:
            row["grounding"] = [{"question": n.question, "answer": n.answer} for n in self.grounding]
        return row

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Example:
        system, question, answer = _parse_messages(data.get("messages"))
        raw_notes = data.get("grounding")
        notes: list[Any] = raw_notes if isinstance(raw_notes, list) else []
        return cls(
            question=question,
            answer=answer,
            source=str(data.get("source", SOURCE_SEED)),
            system=system,
            route=str(data.get("route", "domain")),
            turn_id=data["turn_id"] if isinstance(data.get("turn_id"), int) else None,
            grounding=tuple(Note(str(n.get("question", "")), str(n.get("answer", "")))
                            for n in notes if isinstance(n, dict)),
        )


# --- redaction -------------------------------------------------------------------------------

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# 13-19 digits, optionally grouped by spaces or dashes; confirmed with the Luhn checksum so
# plant counts and SKUs survive.
CARD_RE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
# International or North-American style numbers with at least 7 digits, with or without
# separators (a bare 10-15 digit run is treated as a phone number: better over- than under-redact).
PHONE_RE = re.compile(
    r"(?<![\w+])(?:\+?\d{10,15}"
    r"|(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4})(?!\w)"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class Redactor:
    """Replaces personal data with placeholders and counts what it replaced, per kind."""

    def __init__(self, extra_patterns: list[str] | tuple[str, ...] = ()) -> None:
        self.extra = [re.compile(p) for p in extra_patterns]
        self.counts: Counter[str] = Counter()

    def __call__(self, text: str) -> str:
        text = EMAIL_RE.sub(self._counted("EMAIL"), text)
        text = CARD_RE.sub(self._card, text)
        text = PHONE_RE.sub(self._phone, text)
        for pattern in self.extra:
            text = pattern.sub(self._counted("REDACTED"), text)
        return text

    def _counted(self, kind: str) -> Any:
        def replace(_match: re.Match[str]) -> str:
            self.counts[kind.lower()] += 1
            return f"[{kind}]"

        return replace

    def _card(self, match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            self.counts["card"] += 1
            return "[CARD]"
        return match.group(0)

    def _phone(self, match: re.Match[str]) -> str:
        raw = match.group(0)
        digits = re.sub(r"\D", "", raw)
        # Needs 7+ digits and a phone-like shape; a lone "12-15" or a year range stays.
        if len(digits) < 7 or re.fullmatch(r"\d{4}\s*-\s*\d{4}", raw):
            return raw
        self.counts["phone"] += 1
        return "[PHONE]"


# --- reading ---------------------------------------------------------------------------------


def _parse_messages(messages: Any) -> tuple[str, str, str]:
    """(system, question, answer) from a chat-message list ending in a user→assistant pair."""
    if not isinstance(messages, list) or len(messages) < 2:
        raise ValueError('needs "messages": a list with a user and an assistant message')
    system = ""
    rest = messages
    first = messages[0]
    if isinstance(first, dict) and first.get("role") == "system":
        system = str(first.get("content", ""))
        rest = messages[1:]
    if len(rest) != 2:
        raise ValueError("needs exactly one user message followed by one assistant message")
    user, assistant = rest
    if not (isinstance(user, dict) and user.get("role") == "user"):
        raise ValueError('the first non-system message must have role "user"')
    if not (isinstance(assistant, dict) and assistant.get("role") == "assistant"):
        raise ValueError('the last message must have role "assistant"')
    question = str(user.get("content", "")).strip()
    answer = str(assistant.get("content", "")).strip()
    if not question or not answer:
        raise ValueError("the user and assistant messages must not be empty")
    return system, question, answer


def read_seed_dataset(path: Path) -> list[Example]:
    """Read a JSONL of {"messages": [...]} lines; a bad line stops the export and names itself."""
    if not path.is_file():
        raise DatasetError(
            f"training.seed_dataset: {path} does not exist (create it, or point the key at your JSONL)"
        )
    examples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("each line must be a JSON object")
            system, question, answer = _parse_messages(data.get("messages"))
        except (json.JSONDecodeError, ValueError) as exc:
            raise DatasetError(f"{path}:{lineno}: {exc}; fix or remove the line") from None
        examples.append(Example(question, answer, SOURCE_SEED, system=system))
    return examples


def read_jsonl_examples(path: Path) -> list[Example]:
    """Read a split written by `export_dataset`."""
    return [
        Example.from_json(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


# --- export ----------------------------------------------------------------------------------


@dataclass
class ExportResult:
    out_dir: Path
    train: list[Example]
    eval: list[Example]
    data_hash: str
    report: dict[str, Any] = field(default_factory=dict)
    labels_until: datetime | None = None

    @property
    def train_path(self) -> Path:
        return self.out_dir / "train.jsonl"

    @property
    def eval_path(self) -> Path:
        return self.out_dir / "eval.jsonl"


def split_bucket(question: str) -> float:
    """A stable number in [0, 1) for the question, independent of the rest of the data."""
    digest = hashlib.sha256(canonical_question(question).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def labeled_examples(
    settings: Settings, store: ConversationStore, stats: Counter[str]
) -> tuple[list[Example], datetime | None]:
    """Staff-confirmed answers and staff corrections for the routes training learns."""
    routes = {"domain"} | ({"retrieval"} if settings.training.include_retrieval_turns else set())
    examples: list[Example] = []
    latest: datetime | None = None
    for turn in store.labeled_turns():
        latest = turn.labeled_at if latest is None or turn.labeled_at > latest else latest
        route = turn.correct_route or turn.route
        stats[f"verdict_{turn.verdict}"] += 1
        if route not in routes:
            stats[f"skipped_route_{route}"] += 1
            continue
        if turn.verdict == "correct":
            answer, source = without_similar_frame(turn.answer), SOURCE_CORRECT
        elif turn.corrected_answer.strip():
            answer, source = turn.corrected_answer, SOURCE_CORRECTED
        else:
            stats["skipped_incorrect_without_correction"] += 1
            continue
        question = turn.learn_question.strip()  # a follow-up is learnt in its standalone form
        if not question or not answer.strip():
            stats["skipped_empty"] += 1
            continue
        examples.append(Example(question, answer.strip(), source, route=route, turn_id=turn.turn_id))
    return examples, latest


def build_examples(
    settings: Settings, store: ConversationStore | None, stats: Counter[str], redactor: Redactor
) -> tuple[list[Example], datetime | None]:
    """Seed + labeled examples, redacted, one per question (the staff's latest word wins)."""
    seed = read_seed_dataset(settings.training.seed_dataset)
    stats["seed_read"] = len(seed)
    labeled: list[Example] = []
    latest = None
    if store is not None:
        labeled, latest = labeled_examples(settings, store, stats)
    stats["labeled_read"] = len(labeled)
    by_question: dict[str, Example] = {}
    for ex in [*seed, *labeled]:
        clean = Example(redactor(ex.question), redactor(ex.answer), ex.source, ex.system, ex.route, ex.turn_id)
        key = canonical_question(clean.question)
        kept = by_question.get(key)
        if kept is not None:
            stats["duplicates_dropped"] += 1
            # Later labels override earlier ones; staff corrections override seed text.
            if SOURCE_PRIORITY[clean.source] < SOURCE_PRIORITY[kept.source]:
                continue
        by_question[key] = clean
    return list(by_question.values()), latest


def split_examples(examples: list[Example], eval_fraction: float) -> tuple[list[Example], list[Example]]:
    """Hold out every question whose hash bucket is below `eval_fraction`, topped up to the share.

    Questions below the threshold are held out forever, whatever else is added. On a few dozen
    examples the threshold alone can hold out far fewer than asked, so the next-lowest buckets
    top it up; such a borderline question may change sides as data grows. If it moves into
    eval after the served adapter trained on it, the served model looks better than it is, so
    the gate errs towards keeping it, never towards promoting a candidate.
    """
    ranked = sorted(examples, key=lambda ex: (split_bucket(ex.question), ex.question))
    wanted = max(1, round(len(ranked) * eval_fraction)) if len(ranked) >= 2 else 0
    below = sum(1 for ex in ranked if split_bucket(ex.question) < eval_fraction)
    cut = max(below, wanted)
    held, train = ranked[:cut], ranked[cut:]
    # Train order is shuffled later with the seed; keep files in a stable, readable order.
    return sorted(train, key=lambda e: e.question), sorted(held, key=lambda e: e.question)


def hash_examples(train: list[Example], held: list[Example]) -> str:
    h = hashlib.sha256()
    for name, part in (("train", train), ("eval", held)):
        h.update(name.encode())
        for ex in part:
            h.update(json.dumps(ex.to_json(), sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def _length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": float(statistics.median(values)), "max": max(values)}


def data_report(
    train: list[Example], held: list[Example], stats: Counter[str], redaction: Counter[str]
) -> dict[str, Any]:
    everything = [*train, *held]
    return {
        "examples": len(everything),
        "train": len(train),
        "eval": len(held),
        "by_source": dict(Counter(ex.source for ex in everything)),
        "by_route": dict(Counter(ex.route for ex in everything)),
        "label_mix": {k[len("verdict_"):]: v for k, v in stats.items() if k.startswith("verdict_")},
        "skipped": {k[len("skipped_"):]: v for k, v in stats.items() if k.startswith("skipped_")},
        "duplicates_dropped": stats.get("duplicates_dropped", 0),
        "redactions": dict(redaction),
        "question_words": _length_stats([len(ex.question.split()) for ex in everything]),
        "answer_words": _length_stats([len(ex.answer.split()) for ex in everything]),
    }


def grounding_report(train: list[Example], held: list[Example], grounder: Grounder) -> dict[str, Any]:
    def entries(part: list[Example]) -> dict[str, float]:
        counts = [len(ex.grounding) for ex in part]
        return {"mean": round(sum(counts) / len(counts), 2) if counts else 0.0,
                "without": sum(1 for c in counts if c == 0)}

    return {"k": grounder.k, "answer_share": grounder.answer_share, "memory_entries": len(grounder.notes),
            "train_entries": entries(train), "eval_entries": entries(held),
            "train_with_answering_entry": grounder.stats.get("with_answering_entry", 0)}


def render_data_report(report: dict[str, Any], data_hash: str) -> str:
    def fmt(d: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

    q, a = report["question_words"], report["answer_words"]
    return "\n".join(
        [
            "# Training data report",
            "",
            f"- data hash: `{data_hash[:16]}`",
            f"- examples: {report['examples']} (train {report['train']}, eval {report['eval']})",
            f"- by source: {fmt(report['by_source'])}",
            f"- by route: {fmt(report['by_route'])}",
            f"- staff label mix: {fmt(report['label_mix'])}",
            f"- skipped labels: {fmt(report['skipped'])}",
            f"- duplicates dropped: {report['duplicates_dropped']}",
            f"- redactions: {fmt(report['redactions'])}",
            f"- question length (words): min {q['min']}, median {q['median']}, max {q['max']}",
            f"- answer length (words): min {a['min']}, median {a['median']}, max {a['max']}",
            *([_grounding_line(report["grounding"])] if report.get("grounding") else []),
            "",
        ]
    )


def _grounding_line(g: dict[str, Any]) -> str:
    return (f"- grounding (the served prompt, memory of {g['memory_entries']} entries, k={g['k']}): "
            f"{g['train_entries']['mean']} entries per training prompt ({g['train_entries']['without']} without), "
            f"{g['train_with_answering_entry']} shown an entry that answers them; "
            f"{g['eval_entries']['mean']} per held-out prompt")


def export_dataset(
    settings: Settings, store: ConversationStore | None, out_dir: Path, grounder: Grounder | None = None
) -> ExportResult:
    """Write train.jsonl, eval.jsonl, report.json and report.md (each atomically) to `out_dir`.

    With a `grounder`, every example carries the expert entries its served prompt would hold
    (`training.grounding`): the files are then exactly what the model is trained and scored on."""
    stats: Counter[str] = Counter()
    redactor = Redactor(settings.training.redact_patterns)
    examples, latest = build_examples(settings, store, stats, redactor)
    if not examples:
        raise DatasetError(
            "no training examples: the seed dataset is empty and no staff-labeled turns qualify "
            "(add lines to training.seed_dataset or label some answers in Slack)"
        )
    train, held = split_examples(examples, settings.training.eval_fraction)
    if not train:
        raise DatasetError("only one training example: add more to training.seed_dataset")
    if grounder is not None:
        train = grounder.ground(train, hide=held)
        held = grounder.ground(held, answer_share=1.0)
    data_hash = hash_examples(train, held)
    report = data_report(train, held, stats, redactor.counts)
    if grounder is not None:
        report["grounding"] = grounding_report(train, held, grounder)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.jsonl", train), ("eval.jsonl", held)):
        text = "".join(json.dumps(ex.to_json(), ensure_ascii=False) + "\n" for ex in part)
        atomic_write_text(out_dir / name, text)
    atomic_write_json(out_dir / "report.json", {"data_hash": data_hash, **report})
    atomic_write_text(out_dir / "report.md", render_data_report(report, data_hash))
    log.info(
        "exported %d train / %d eval examples to %s (redacted %s)",
        len(train), len(held), out_dir, dict(redactor.counts) or "nothing",
    )
    return ExportResult(out_dir, train, held, data_hash, report, latest)
