"""Real servers (PostgreSQL, Chroma) started by tests on 127.0.0.1, never assumed running."""
