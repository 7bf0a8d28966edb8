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
CARRY = True
MAX_CARRIED = 6  # slots and need words carried into a follow-up: enough for "(Minneapolis, heat, pack…)"
EARLIER_CHARS = 400  # of the earlier questions, the most recent part: the message must stay in the
# embedder's 256 tokens, and an over-long earlier message must not become the whole question


# Words of an earlier question that ask rather than name: never carried into a follow-up.
_ASKING = frozenset(
    "how what when where which who why long much many often cost costs price prices need needs take takes "
    "get got possible ok okay normal".split()
)
SubjectFinder = Callable[[str], list[tuple[str, str]]]


def no_subjects(text: str) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Resolution:
    """What the pipeline routes and answers: the message alone or read with the earlier questions."""

    question: str  # what is routed and answered
    decision: RouteDecision
    standalone_question: str = ""  # == question when context was used, else ""
    context_turn_id: int | None = None
    looked_dependent: bool = False
    # The previous turn's question and answer in this conversation ("" when none or unknown): a
    # follow-up that asks something new must not get the same answer again.
    previous_question: str = ""
    previous_answer: str = ""

    @property
    def used_context(self) -> bool:
        return bool(self.standalone_question)

    def repeats_previous(self, message: str, answer: str) -> bool:
        """`answer` is the previous turn's answer again, to a message that is not the previous question again."""
        def same(a: str, b: str) -> bool:
            return " ".join(a.lower().split()) == " ".join(b.lower().split())

        return bool(self.previous_answer) and same(answer, self.previous_answer) and not same(
            message, self.previous_question)


def looks_dependent(message: str, subjects: SubjectFinder = no_subjects) -> bool:
    """Whether a message reads as a continuation: a leading connector, a word pointing back, or
    too few content words to name its own subject. A pronoun does not make a message dependent when
    the message names its own subject ("How can I change my order after placing it?" names the
    order; "is my Lithops ok if it gets cold?" names the plant)."""
    words = set(_WORD.findall(message.lower().replace("\u2019", "'")))
    # "thanks!", "ok", "?": nothing to read with the conversation (re-asking the last question
    # would answer it twice).
    if not words or words <= _ACKNOWLEDGEMENTS:
        return False
    if _CONNECTOR.match(message):
        return True
    named = bool(subjects(message))
    if words & _ANAPHORA and not (named or _names_own_object(message)):
        return True
    # "why?", or two content words or fewer: too little to name a subject of its own.
    return len(content_words(message)) <= SHORT_CONTENT_WORDS and not named


def _names_own_object(message: str) -> bool:
    """"…my order after placing it": the pronoun points at a noun of the same message (a possessive
    "my/your/the <noun>" before it), not at the conversation."""
    lowered = message.lower()
    first_pronoun = min((m.start() for m in re.finditer(r"\b(?:it|its|that|this|them|they|one)\b", lowered)),
                        default=-1)
    if first_pronoun < 0:
        return False
    before = lowered[:first_pronoun]
    return bool(re.search(r"\b(?:my|your|our|the|a|an)\s+[a-z]{3,}", before)) and len(content_words(before)) >= 2


def carried_question(earlier: Sequence[str], message: str, subjects: SubjectFinder = no_subjects) -> str:
    """The follow-up's own need, completed with what it leaves out: "and how much is it? (Alaska,
    ship)". The message comes first and keeps its words. From the earlier questions (newest first)
    come the slots it does not fill itself, the newest value of each kind (a plant, a place, a plan:
    "what about Hawaii?" replaces the place), and, when the message names no need of its own (no
    content word besides its subjects: "and how much is it?", "what about Alaska?"), the need words
    of the newest earlier question that had any ("ship"). A message with a need of its own keeps it:
    "and what should I pot it in?" after a question about a Dracula's temperature is about potting
    a Dracula, not about temperature again."""
    message = " ".join(message.split())
    own = subjects(message)
    own_kinds = {kind for kind, _ in own}
    own_words = set(_WORD.findall(message.lower())) | {w for _, name in own for w in name.lower().split()}
    carried: list[str] = []

    def carry(word: str) -> None:
        if word.lower() not in own_words and word.lower() not in {c.lower() for c in carried}:
            carried.append(word)

    filled = set(own_kinds)
    for question in reversed(earlier):
        for kind, name in subjects(question):
            if kind not in filled:
                carry(name)
                filled.add(kind)
    if not _need_words(message, own):
        for question in reversed(earlier):
            need = _need_words(question, subjects(question))
            if need:
                for word in need:
                    carry(word)
                break
    carried = carried[:MAX_CARRIED]
    return f"{message} ({', '.join(carried)})" if carried else message


def _need_words(text: str, named: Sequence[tuple[str, str]]) -> list[str]:
    """What a message asks about, in its order: its content words besides its subjects and the
    words that only ask ("how much", "long", "cost")."""
    subject_words = {w for _, name in named for w in _WORD.findall(name.lower())}
    content = content_words(text)
    return list(dict.fromkeys(w for w in _WORD.findall(text.lower().replace("\u2019", "'"))
                              if w in content and w not in _ASKING and w not in subject_words))


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

    def __init__(self, config: ConversationConfig, store: ConversationStore | None, decide: Callable[[str], RouteDecision],
                 subjects: SubjectFinder = no_subjects):
        self.cfg = config
        self.store = store
        self.decide = decide
        self.subjects = subjects

    def earlier_questions(self, ctx: AskContext) -> tuple[list[str], int | None]:
        """The chain of earlier questions (oldest first, at most `max_turns`) and the turn it ends at."""
        questions, turn_id, _ = self.earlier(ctx)
        return questions, turn_id

    def earlier(self, ctx: AskContext) -> tuple[list[str], int | None, str]:
        """`earlier_questions`, and the newest earlier turn's answer ("" when the channel's own history
        has no answers)."""
        if ctx.earlier_questions:
            # A channel's own history (a Rasa tracker) does not say which messages were read as
            # follow-ups: the chain reaches back while the newer message looks dependent.
            questions = [clean_question(q).strip() for q in ctx.earlier_questions if q and q.strip()]
            chain = questions[-1:]
            for older in reversed(questions[:-1]):
                if len(chain) >= self.cfg.max_turns or not looks_dependent(chain[0], self.subjects):
                    break
                chain.insert(0, older)
            return chain, None, ""
        if self.store is None or ctx.history == "none" or not (ctx.conversation_key or ctx.history == "slack_channel"):
            return [], None, ""
        turns = self.store.earlier_turns(ctx, within=timedelta(minutes=self.cfg.window_minutes),
                                         limit=self.cfg.max_turns)
        if not turns:
            return [], None, ""
        # Newest first from the log; a chain continues back only through turns read as follow-ups.
        linked = [turns[0]]
        for earlier in turns[1:]:
            if linked[-1].context_turn_id != earlier.turn_id:
                break
            linked.append(earlier)
        return [t.question for t in reversed(linked)], turns[0].turn_id, turns[0].answer

    def resolve(self, message: str, ctx: AskContext) -> Resolution:
        earlier, context_turn, previous_answer = self.earlier(ctx) if self.cfg.enabled else ([], None, "")
        last = earlier[-1] if earlier else ""
        dependent = bool(earlier) and looks_dependent(message, self.subjects)
        mode = self.cfg.combine
        if not earlier or (mode in ("cue", "cue+confidence") and not dependent):
            return Resolution(message, self.decide(message), looked_dependent=dependent,
                              previous_question=last, previous_answer=previous_answer)
        combined = (carried_question(earlier, message, self.subjects) if CARRY else combined_question(earlier, message))
        if combined == message:  # it leaves nothing out: read as it stands
            return Resolution(message, self.decide(message), looked_dependent=dependent,
                              previous_question=last, previous_answer=previous_answer)
        together = self.decide(combined)
        if mode in ("confidence", "cue+confidence"):
            alone = self.decide(message)
            if together.confidence < alone.confidence:
                return Resolution(message, alone, looked_dependent=dependent,
                              previous_question=last, previous_answer=previous_answer)
        log.info("follow-up read with %d earlier question(s) context_turn=%s route=%s confidence=%.2f", len(earlier),
                 context_turn, together.route, together.confidence)
        return Resolution(combined, together, standalone_question=combined, context_turn_id=context_turn,
                          looked_dependent=dependent,
                              previous_question=last, previous_answer=previous_answer)
