-- Model downloads, so that the app lists them and a restart continues them.
-- `state`: queued, running, paused, done, failed or cancelled.
CREATE TABLE downloads (
    repo       TEXT PRIMARY KEY NOT NULL,
    revision   TEXT NOT NULL,
    patterns   TEXT NOT NULL,
    state      TEXT NOT NULL,
    downloaded INTEGER NOT NULL DEFAULT 0,
    total      INTEGER NOT NULL DEFAULT 0,
    error      TEXT,
    updated_at TEXT NOT NULL
);
