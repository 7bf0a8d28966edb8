"""The expert memory: the Q&A pairs the domain route may rely on, searchable by question.

Seed pairs (`training.seed_dataset`), staff corrections and answers staff marked correct. The
conversation log and the seed file are the source of truth; the Chroma collection is an index
rebuilt from them, so every replica converges on the same entries within `memory.poll_s`.
"""

from bot.memory.entries import ExpertEntry
from bot.memory.index import ExpertMemory, MemoryHit

__all__ = ["ExpertEntry", "ExpertMemory", "MemoryHit"]
