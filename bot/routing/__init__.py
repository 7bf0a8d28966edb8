"""Routing: topics learnt from the seed file and staff labels, mapped to routes (see bot/router.py)."""
