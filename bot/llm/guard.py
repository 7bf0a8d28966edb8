"""Output guardrails shared by every backend: what a model writes is checked before a customer sees it.

A small fine-tuned model loops ("Genetic Testing Registry: ..." over and over), echoes its
system prompt, leaks chat-template tokens and wanders off topic. Backends block most of that
while decoding (repetition penalty, n-gram blocking, the early stop below); this module is the
last line: it trims a loop, removes leaked tokens and prompt text, caps the length, and refuses
an answer that is still degenerate by raising `AnswererUnavailable`, so the pipeline falls back
to retrieval or a person instead of sending noise.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from bot.config import DomainConfig
from bot.errors import AnswererUnavailable

# Chat-template markers of the common families (ChatML, Llama 3, Gemma, Mistral) and GPT-style
# end tokens; a model that emits one mid-answer must not show it to a customer.
SPECIAL_TOKEN_RE = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|</?s>|<(?:start|end)_of_turn>|\[/?INST\]|<unk>|<pad>"
)
# A role header left behind after a template token was removed ("assistant\n...").
ROLE_PREFIX_RE = re.compile(r"^\s*(?:assistant|system|user)\s*[:\n]\s*", re.IGNORECASE)
WORD_RE = re.compile(r"\S+")
TOKEN_RE = re.compile(r"\w+", re.UNICODE)
SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n+|$)\s*")
PROMPT_LEAK_WORDS = 8


class DegenerateAnswer(AnswererUnavailable):
    """The model's answer is unusable (a loop, empty, or off topic); the pipeline falls back."""


@dataclass(frozen=True)
class GuardPolicy:
    """The limits one answer is held to; built from `[domain]` so tests can vary them."""

    system_prompt: str = ""
    stop: tuple[str, ...] = ()
    max_chars: int = 1500
    loop_min_repeats: int = 3
    degenerate_ngram_size: int = 4
    degenerate_ngram_ratio: float = 0.3
    min_chars: int = 2
    refusal_phrases: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, cfg: DomainConfig) -> GuardPolicy:
        return cls(
            system_prompt=cfg.system_prompt,
            stop=tuple(cfg.stop),
            max_chars=cfg.max_answer_chars,
            loop_min_repeats=cfg.loop_min_repeats,
            degenerate_ngram_size=cfg.degenerate_ngram_size,
            degenerate_ngram_ratio=cfg.degenerate_ngram_ratio,
            refusal_phrases=tuple(cfg.refusal_phrases),
        )


def strip_special_tokens(text: str) -> str:
    cleaned = SPECIAL_TOKEN_RE.sub("", text)
    if cleaned != text:
        cleaned = ROLE_PREFIX_RE.sub("", cleaned)
    return cleaned


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    positions = [text.find(s) for s in stops if s]
    hits = [p for p in positions if p >= 0]
    if not hits:
        return text, False
    return text[: min(hits)], True


def find_trailing_loop(text: str, min_repeats: int = 3, max_period: int = 60) -> int | None:
    """Character offset where a trailing loop's second copy starts, or None when there is none.

    Works on words so a loop whose last copy was cut mid-way by the token limit still counts:
    for each period p, count how many trailing words equal the word p earlier; the periodic
    stretch then holds (run + p) / p copies.
    """
    spans = [m.span() for m in WORD_RE.finditer(text)]
    words = [text[a:b].lower().strip(".,;:!?\"'") for a, b in spans]
    n = len(words)
    for period in range(1, min(max_period, n // min_repeats) + 1):
        run = 0
        while run < n - period and words[n - 1 - run] == words[n - 1 - run - period]:
            run += 1
        copies = (run + period) / period
        if copies >= min_repeats and run + period >= 6:
            keep_words = n - run
            return spans[keep_words][0] if keep_words < n else None
    return None


def trim_loop(text: str, min_repeats: int = 3) -> str:
    """Keep one copy of a trailing loop and drop sentences the answer already said."""
    cut = find_trailing_loop(text, min_repeats)
    if cut is not None:
        text = text[:cut].rstrip()
    seen: set[str] = set()
    kept: list[str] = []
    for match in SENTENCE_RE.finditer(text):
        sentence = match.group(0)
        key = " ".join(WORD_RE.findall(sentence.lower()))
        if key and key in seen and len(key) > 12:
            continue
        seen.add(key)
        kept.append(sentence)
    return "".join(kept).strip() if kept else text.strip()


def repeated_ngram_ratio(text: str, n: int = 4) -> float:
    """Share of word n-grams that already occurred earlier in the text (0 for fresh prose)."""
    words = [w.lower() for w in WORD_RE.findall(text)]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def degenerate_reason(text: str, policy: GuardPolicy | None = None) -> str:
    """Why an answer is unusable, or "" if it is fine.

    The one definition that serving (`finalize_answer`), the training gate and `supportbot eval`
    share, so "degenerate" means the same thing in a report as in front of a customer. Besides
    repeated n-grams it catches the template loop seen after fine-tuning on MedQuAD, where each
    line differs ("Genetic Testing Registry: A syndrome", "...: B syndrome") but one phrase
    dominates the answer.
    """
    policy = policy or GuardPolicy()
    stripped = text.strip()
    if len(stripped) < policy.min_chars or not any(ch.isalnum() for ch in stripped):
        return "empty"
    ratio = repeated_ngram_ratio(stripped, policy.degenerate_ngram_size)
    if ratio > policy.degenerate_ngram_ratio:
        return (
            f"{ratio:.0%} of its {policy.degenerate_ngram_size}-word sequences repeat "
            f"(limit {policy.degenerate_ngram_ratio:.0%})"
        )
    lines = [ln.strip().lower() for ln in stripped.splitlines() if len(ln.split()) >= 3]
    if lines:
        line, count = Counter(lines).most_common(1)[0]
        if count >= 3:
            return f"repeats the line {line[:40]!r} {count} times"
    words = [w.lower() for w in TOKEN_RE.findall(stripped)]
    if len(words) >= 12:
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        gram, count = Counter(trigrams).most_common(1)[0]
        if count >= 4 and count / len(trigrams) >= 0.12:
            return f"repeats {' '.join(gram)!r} {count} times"
    return ""


def remove_prompt_leak(text: str, system_prompt: str, min_words: int = PROMPT_LEAK_WORDS) -> str:
    """Drop every sentence that repeats `min_words` consecutive words of the system prompt."""
    prompt_words = [w.lower() for w in WORD_RE.findall(system_prompt)]
    if len(prompt_words) < min_words:
        return text
    prompt_grams = {
        tuple(prompt_words[i : i + min_words]) for i in range(len(prompt_words) - min_words + 1)
    }
    kept = []
    for match in SENTENCE_RE.finditer(text):
        sentence = match.group(0)
        words = [w.lower() for w in WORD_RE.findall(sentence)]
        grams = {tuple(words[i : i + min_words]) for i in range(len(words) - min_words + 1)}
        if grams & prompt_grams:
            continue
        kept.append(sentence)
    return "".join(kept).strip()


def limit_length(text: str, max_chars: int) -> str:
    """Cut to `max_chars`, at the last sentence end when one is near, so no half sentence shows."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "), head.rfind("\n"))
    if end >= max_chars // 2:
        return head[: end + 1].rstrip()
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).rstrip() + " …"


def clean_partial(text: str, policy: GuardPolicy) -> str:
    """What may be shown while the answer is still forming (no tokens, no stop text, capped)."""
    text, _ = cut_at_stop(strip_special_tokens(text), policy.stop)
    return limit_length(text.strip(), policy.max_chars)


def should_stop_early(text: str, policy: GuardPolicy) -> str | None:
    """A reason to stop decoding now (stop string, loop), so a rambling model wastes no time."""
    if cut_at_stop(text, policy.stop)[1]:
        return "stop string"
    if len(text) > policy.max_chars + 200:
        return "length limit"
    if find_trailing_loop(text, policy.loop_min_repeats + 1) is not None:
        return "repetition loop"
    return None


def finalize_answer(raw: str, policy: GuardPolicy) -> str:
    """The customer-facing text, or `DegenerateAnswer` with a reason the log and staff can read."""
    text = strip_special_tokens(raw)
    text, _ = cut_at_stop(text, policy.stop)
    text = remove_prompt_leak(text, policy.system_prompt)
    text = trim_loop(text, policy.loop_min_repeats)
    text = limit_length(text.strip(), policy.max_chars)
    if len(text) < policy.min_chars or not any(ch.isalnum() for ch in text):
        raise DegenerateAnswer(f"degenerate answer: empty after cleaning (raw {len(raw)} chars)")
    why = degenerate_reason(text, policy)
    if why:
        raise DegenerateAnswer(f"degenerate answer: {why}")
    lowered = text.lower()
    for phrase in policy.refusal_phrases:
        if phrase and lowered.startswith(phrase.lower()):
            raise DegenerateAnswer(f"outside the domain: the model declined ({phrase!r})")
    return text
