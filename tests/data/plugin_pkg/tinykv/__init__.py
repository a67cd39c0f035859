"""TinyKV: a key-value store with no replication at all, each node on its own (a test plugin)."""
