"""The run store's tables, and the version written in ``PRAGMA user_version``.

One table of sweeps, one of runs (a row per training run: its state, swept params, final config,
summary, process and files), one of per-epoch metrics. Every write goes through
:mod:`cnn_tracker.store.db`; every change of a run's ``state`` through
:mod:`cnn_tracker.runs.lifecycle`.
"""

DB_NAME = "store.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT,
    project TEXT NOT NULL,
    method TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',
    message TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    sweep_id TEXT,
    project TEXT,
    name TEXT,
    state TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    search_info TEXT,
    agent TEXT,
    host TEXT,
    pid INTEGER,
    exitcode INTEGER,
    should_stop INTEGER NOT NULL DEFAULT 0,
    epochs INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    output_dir TEXT,
    wandb_dir TEXT,
    log_path TEXT,
    message TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL
);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id, seq);
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""
