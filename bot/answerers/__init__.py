"""One answerer per route, each with the `bot.answer.Answerer` interface."""
