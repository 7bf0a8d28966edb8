"""supportbot: customer-support bots that live in Slack."""

__version__ = "0.1.0"
