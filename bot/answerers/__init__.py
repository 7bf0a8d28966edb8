"""One answerer per route, each with the `bot.interfaces.Answerer` interface."""
