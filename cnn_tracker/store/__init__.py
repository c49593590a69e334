"""The local run store (SQLite): schema, connection, plain reads and writes, recovery."""
