-- Settings: one row per setting, the value as JSON. Missing rows mean the default.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- API keys for the OpenAI/Anthropic port. Only a SHA-256 of each key is kept;
-- `prefix` (the first characters) lets a user tell keys apart in listings.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
