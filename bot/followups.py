"""Follow-ups: a message that leans on what was said before is routed and answered with it.

"What about Hawaii?" and "and how much is it?" mean nothing alone; "is that normal in winter?"
after "My Venus flytrap traps are turning black" is about the flytrap. Hosted support bots
rewrite such a message into a standalone question with a large LLM; the bundled 135M model
cannot, so the standalone form here is the earlier questions of the chain followed by the
message, and the decision *whether* to read a message that way is what matters: a message
that stands alone ("How often should I water a Lithops?" after a shipping question, "my order
RR-1234 never came" after a policy answer) must be routed exactly as if it were the first.

The rule (`conversation.combine`, chosen on a tuning set and measured on a held-out one in
docs/benchmarks/conversations.md): a message is read with the earlier questions when it looks
dependent (a pronoun, a leading "and" or "what about", or two content words or fewer). Also
requiring the router to be surer of the combined question ('cue+confidence') or using that
alone ('confidence') did worse on the tuning set; reading every message with its conversation
('always') routed topic changes wrong. A first message costs one indexed read of the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.config import ConversationConfig
from bot.interfaces import AskContext, RouteDecision
from bot.memory.matching import content_words
from bot.question_input import clean_question

if TYPE_CHECKING:
    from bot.conversation_log import ConversationStore

log = logging.getLogger(__name__)

# A message that opens like this continues the previous one.
_CONNECTOR = re.compile(
    r"^\s*(?:and|also|but|or|so|then|plus|ok(?:ay)?|what about|how about|what if|same|even|"
    r"what else|anything else|and if|in that case)\b", re.IGNORECASE,
)
# Words that point back at something named earlier.
_ANAPHORA = frozenset(
    "it its it's itself that that's this these those they them their theirs there one ones he she "
    "him her then such".split()
)
_WORD = re.compile(r"[a-z']+")
_ACKNOWLEDGEMENTS = frozenset(
    "thanks thank you thx ty ok okay k great cool perfect nice got it bye hi hello hey yes no yep nope sure "
    "alright fine good awesome cheers".split()
)
SHORT_CONTENT_WORDS = 2  # "What about Hawaii?" (1), "which soil then?" (1); "Do you ship to Canada?" has 2
EARLIER_CHARS = 400  # of the earlier questions, the most recent part: the message must stay in the
# embedder's 256 tokens, and an over-long earlier message must not become the whole question


@dataclass(frozen=True)
class Resolution:
    """What the pipeline routes and answers: the message alone or read with the earlier questions."""

    question: str  # what is routed and answered
    decision: RouteDecision
    standalone_question: str = ""  # == question when context was used, else ""
    context_turn_id: int | None = None
    looked_dependent: bool = False

    @property
    def used_context(self) -> bool:
        return bool(self.standalone_question)


def looks_dependent(message: str) -> bool:
    """Whether a message reads as a continuation: a leading connector, a word pointing back, or
    too few content words to name its own subject."""
    words = set(_WORD.findall(message.lower().replace("\u2019", "'")))
    # "thanks!", "ok", "?": nothing to read with the conversation (re-asking the last question
    # would answer it twice).
    if not words or words <= _ACKNOWLEDGEMENTS:
        return False
    if _CONNECTOR.match(message) or words & _ANAPHORA:
        return True
    # "why?", or two content words or fewer: too little to name a subject of its own.
    return len(content_words(message)) <= SHORT_CONTENT_WORDS


def combined_question(earlier: Sequence[str], message: str, earlier_chars: int = EARLIER_CHARS) -> str:
    """The earlier questions of the chain, oldest first (their last `earlier_chars`, cut at a word),
    then the message, each ending a sentence."""
    before = " ".join(p if p[-1] in ".?!" else f"{p}." for p in (" ".join(q.split()) for q in earlier) if p)
    if len(before) > earlier_chars:
        cut = before[-earlier_chars:]
        before = cut[cut.find(" ") + 1:] if " " in cut else cut
    message = " ".join(message.split())
    return f"{before} {message}" if before else message


class FollowupResolver:
    """Reads a message with its conversation when it depends on it, and routes it either way."""

    def __init__(self, config: ConversationConfig, store: ConversationStore | None, decide: Callable[[str], RouteDecision]):
        self.cfg = config
        self.store = store
        self.decide = decide

    def earlier_questions(self, ctx: AskContext) -> tuple[list[str], int | None]:
        """The chain of earlier questions (oldest first, at most `max_turns`) and the turn it ends at."""
        if ctx.earlier_questions:
            # A channel's own history (a Rasa tracker) does not say which messages were read as
            # follow-ups: the chain reaches back while the newer message looks dependent.
            questions = [clean_question(q).strip() for q in ctx.earlier_questions if q and q.strip()]
            chain = questions[-1:]
            for older in reversed(questions[:-1]):
                if len(chain) >= self.cfg.max_turns or not looks_dependent(chain[0]):
                    break
                chain.insert(0, older)
            return chain, None
        if self.store is None or ctx.history == "none" or not (ctx.conversation_key or ctx.history == "slack_channel"):
            return [], None
        turns = self.store.earlier_turns(ctx, within=timedelta(minutes=self.cfg.window_minutes),
                                         limit=self.cfg.max_turns)
        if not turns:
            return [], None
        # Newest first from the log; a chain continues back only through turns read as follow-ups.
        linked = [turns[0]]
        for earlier in turns[1:]:
            if linked[-1].context_turn_id != earlier.turn_id:
                break
            linked.append(earlier)
        return [t.question for t in reversed(linked)], turns[0].turn_id

    def resolve(self, message: str, ctx: AskContext) -> Resolution:
        earlier, context_turn = self.earlier_questions(ctx) if self.cfg.enabled else ([], None)
        dependent = bool(earlier) and looks_dependent(message)
        mode = self.cfg.combine
        if not earlier or (mode in ("cue", "cue+confidence") and not dependent):
            return Resolution(message, self.decide(message), looked_dependent=dependent)
        combined = combined_question(earlier, message)
        together = self.decide(combined)
        if mode in ("confidence", "cue+confidence"):
            alone = self.decide(message)
            if together.confidence < alone.confidence:
                return Resolution(message, alone, looked_dependent=dependent)
        log.info("follow-up read with %d earlier question(s) context_turn=%s route=%s confidence=%.2f", len(earlier),
                 context_turn, together.route, together.confidence)
        return Resolution(combined, together, standalone_question=combined, context_turn_id=context_turn,
                          looked_dependent=dependent)
