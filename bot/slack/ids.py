"""Every action, callback and block id the app sends to Slack and matches on its way back.

One place for them so a builder in blocks.py and its listener can never drift apart, and a
manifest (docs/slack.md) can name the same callback ids.
"""

from __future__ import annotations

# Buttons under an answer.
FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"
TALK_TO_PERSON = "talk_to_person"

# The message shortcut staff use on a bot answer, and the modal it opens.
FLAG_SHORTCUT = "flag_for_retraining"
FLAG_VIEW = "flag_for_retraining_view"
REVIEW_FROM_HOME = "review_from_home"

# Blocks and actions inside the flag modal.
FLAG_VERDICT_BLOCK = "verdict"
FLAG_VERDICT_ACTION = "verdict_choice"
FLAG_CORRECTED_BLOCK = "corrected_answer"
FLAG_CORRECTED_ACTION = "corrected_answer_input"
FLAG_ROUTE_BLOCK = "correct_route"
FLAG_ROUTE_ACTION = "correct_route_choice"
FLAG_NOTE_BLOCK = "note"
FLAG_NOTE_ACTION = "note_input"

# The staff slash command.
SLASH_COMMAND = "/supportbot"

# Link buttons still send an action payload; matched so Bolt does not log them as unhandled.
OPEN_THREAD = "open_thread"
