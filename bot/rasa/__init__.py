"""Rasa custom actions that put this framework's router and answerers behind a Rasa assistant."""
