"""The Slack app: Bolt listeners over the shared pipeline, in Socket Mode or over HTTP.

`build_services` + `build_app` (app.py) make the pieces from settings; `serve_slack` (server.py)
runs them. Nothing here creates an App, a client or a thread at import time.
"""
