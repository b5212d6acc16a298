"""The schema from Alembic enforces state values itself (CHECKs, not native enums)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from controlplane.db.migrate import check


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [("tenants", "status", "deleted"), ("tenants", "kind", "galaxy"), ("tenants", "network_zone", "dmz")],
)
def test_state_columns_reject_unknown_values(engine: Engine, table: str, column: str, value: str) -> None:
    with engine.connect() as conn:
        row_id = conn.execute(text(f"SELECT id FROM {table} LIMIT 1")).scalar_one()
        with pytest.raises(sa_exc.IntegrityError):
            conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE id = :id"), {"v": value, "id": row_id})


def test_operation_state_check(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(sa_exc.IntegrityError):
        conn.execute(
            text(
                "INSERT INTO operations (id, kind, state, attempts, params, created_at, updated_at) "
                "VALUES (:id, 'selftest', 'paused', 0, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"id": "0" * 32},
        )


@pytest.mark.postgres_only
def test_no_native_enum_types(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_type WHERE typtype = 'e'")).scalar() == 0


def test_models_and_migrations_agree(database_url: str) -> None:
    check(database_url)  # raises when `alembic revision --autogenerate` would find changes


def test_tree_queries_use_the_path_index(engine: Engine) -> None:
    indexes = inspect(engine).get_unique_constraints("tenants") + inspect(engine).get_indexes("tenants")
    assert any(ix["column_names"] == ["path"] for ix in indexes)
