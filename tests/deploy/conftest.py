"""Real servers for the deployment tests, started once per session on 127.0.0.1.

Each test gets its own database on the shared PostgreSQL server and its own collection on the
shared Chroma server, so the servers start once and the tests still cannot see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.servers.chroma import chroma_server
from tests.servers.postgres import postgres_server


@pytest.fixture(scope="session")
def chroma_url() -> Iterator[str]:
    with chroma_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """Skips (with the reason) where the PostgreSQL server binaries are not installed."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the session's server; dropped after the test."""
    name = f"deploy_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
