"""The Slack HTTP endpoint serves Prometheus metrics that count real answers (and carry no
customer data), scraped and parsed as Prometheus does."""

from __future__ import annotations

from tests.metrics_scrape import scrape, value
from tests.slack.conftest import mention, message
from tests.slack.test_follow_ups import Bot, bot  # noqa: F401 - the fixture


def test_the_slack_endpoint_serves_metrics_that_count_real_answers(bot: Bot) -> None:  # noqa: F811
    metrics_url = bot.send.url.rsplit("/slack/events", 1)[0] + "/metrics"
    before = scrape(metrics_url)
    thread = "1710000900.000100"
    bot.send.event(mention("Do you ship to Hawaii?", ts=thread), event_id="EvM1")
    bot.answers(1)
    bot.send.event(message("and how much is it?", channel="CGENERAL", channel_type="channel",
                           ts="1710000901.000100", thread_ts=thread), event_id="EvM2")
    bot.answers(2)
    bot.send.event(mention("Something nobody can route", ts="1710000950.000100"), event_id="EvM3")
    bot.answers(3)
    after = scrape(metrics_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("supportbot_questions_total", channel="slack") == 3
    assert delta("supportbot_answers_total", route="retrieval", kind="-") == 2
    assert delta("supportbot_answer_seconds_count", route="retrieval") == 2
    assert delta("supportbot_follow_ups_total") == 1
    assert delta("supportbot_escalations_total", reason="routed") == 1
    assert delta("supportbot_answers_total", route="escalate", kind="escalation") == 1
    assert delta("supportbot_slack_api_calls_total", method="chat.postMessage", outcome="ok") >= 3
    assert value(after, "supportbot_answer_queue_depth") == 0, "every queued question was answered"
    assert not any("Hawaii" in name or "UCUST" in str(labels) for name, labels in after), "no customer data"
