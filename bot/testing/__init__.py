"""Test doubles that the test suite and the benchmarks share: a fake Slack Web API, a fake
OpenAI-compatible server, and tiny random models. They live in the package (not under tests/) so
that a benchmark never imports the test suite or pytest; the running bot never imports them.
"""
