"""The database: engines and transactions, SQL the backends spell differently, what SQLite
needs besides, and the migrations' runner. The rest of the service imports from here and
never asks which database it runs on.

- `Database` (``engine.py``): the engine, the read and write transactions, batched writes
  (`Database.write_batch`), migrating, and `Database.per_backend` for what is done
  differently on each backend.
- ``batch.py``: writes described as data (`Write`, `Writes`), run by `write_batch` or,
  inside a session's transaction, by `run`.
- ``dialect.py``: `insert_or_ignore`, `upsert`, `utc_text` and the rest of the SQL whose
  spelling differs.
- ``sqlite.py``: SQLite's connection settings and its fast path for batched writes.
- ``faults.py``: what a database that cannot take writes (read-only, disk full, down)
  raises: `Unavailable`, a 503 refusal; its connections are reopened before their next use.
- ``schema.py``: runs the Alembic migrations (the scripts are in ``service/migrations/``).
"""

from service.db.batch import Write, Writes, run, run_sync
from service.db.dialect import dialect_name, insert, insert_or_ignore, upsert, utc_text
from service.db.engine import Database, make_engine
from service.db.faults import Unavailable
from service.db.schema import Migrated, SchemaError, SchemaStatus

__all__ = [
    "Database",
    "Migrated",
    "SchemaError",
    "SchemaStatus",
    "Unavailable",
    "Write",
    "Writes",
    "dialect_name",
    "insert",
    "insert_or_ignore",
    "make_engine",
    "run",
    "run_sync",
    "upsert",
    "utc_text",
]
