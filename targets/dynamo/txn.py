"""What a storage job sees: :class:`Txn`, its handle on the batch's open transaction in the
storage writer thread, and :class:`Change`, what the job changed (delivered to the read cache
and the Merkle trees in commit order). See :mod:`targets.dynamo.storage` for the batching."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from targets.dynamo.storage import Storage

MISS = object()       # "not in the writer's row cache" (None there means: known absent)


@dataclass(frozen=True)
class Change:
    """What a job changed: ``obj`` is the stored object after the job (None: row deleted).

    ``loaded``: not a change, a row read on a cache miss (fills the read cache in order)."""

    key: str
    obj: Any
    loaded: bool = False


class Txn:
    """The handle a job gets inside the worker thread (one open transaction)."""

    def __init__(self, storage: Storage, db: sqlite3.Connection) -> None:
        self._s = storage
        self._conn = db
        self.changes: list[Change] = []
        self.dirty = False                 # this job wrote something (a failure must roll it back)

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, inside the batch's transaction with every queued row written: any
        statement but a row upsert goes through here, so statements keep the jobs' order."""
        self._s._open(self._conn)
        return self._conn

    def get(self, key: str) -> Any:
        """The stored object for key (versioning object) or None."""
        for change in reversed(self.changes):           # this job's own writes first
            if change.key == key and not change.loaded:
                return change.obj
        hit = self._s._rows.get(key, MISS)              # committed rows the worker wrote or read
        if hit is not MISS:
            return hit
        row = self._db.execute("SELECT obj FROM kv WHERE key = ?", (key,)).fetchone()
        obj = None if row is None else self._s.versioning.from_text(row[0])
        self._s._remember_row(key, obj)
        return obj

    def put(self, key: str, obj: Any) -> None:
        """Store obj as key's row: queued, and written with the batch's other rows at once."""
        self.dirty = True
        self._s._queued_rows.extend((key, self._s.partition_of(key), self._s.versioning.encode(obj)[0]))
        self.changes.append(Change(key, obj))

    def merge(self, key: str, obj: Any) -> tuple[Any, Any]:
        """Merge ``obj`` into the stored object (written only if it changed); returns (old, new)."""
        v = self._s.versioning
        old = self.get(key)
        new = obj if old is None else v.merge(old, obj)
        if old is None or (new is not old and v.digest(new) != v.digest(old)):
            self.put(key, new)
        return old, new

    def delete(self, key: str) -> None:
        self.dirty = True
        self._db.execute("DELETE FROM kv WHERE key = ?", (key,))
        self.changes.append(Change(key, None))

    def add_hint(self, target: str, key: str) -> None:
        """Remember that ``key`` must be handed to ``target`` (bumps seq if already queued)."""
        self.dirty = True
        self._db.execute("INSERT INTO hints (target, key, seq) VALUES (?, ?, 1) "
                         "ON CONFLICT (target, key) DO UPDATE SET seq = seq + 1", (target, key))

    def drop_hint(self, target: str, key: str, seq: int) -> bool:
        """Delete the hint if it was not re-queued since ``seq`` was read; True when deleted."""
        self.dirty = True
        cur = self._db.execute("DELETE FROM hints WHERE target = ? AND key = ? AND seq = ?",
                               (target, key, seq))
        return cur.rowcount > 0

    def hinted_elsewhere(self, key: str) -> bool:
        """Whether this node holds a hint for ``key`` (to any target): it must still hand it off."""
        return self._db.execute("SELECT 1 FROM hints WHERE key = ? LIMIT 1", (key,)).fetchone() is not None
