-- MCP servers the user configured. `spec` is the server as JSON (its
-- transport, allow and deny patterns) with the values of `env` and `headers`
-- blanked: those are secrets, kept with the other secrets.
CREATE TABLE mcp_servers (
    name       TEXT PRIMARY KEY NOT NULL,
    spec       TEXT NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    added_at   TEXT NOT NULL
);
-- Bumped with every change to mcp_servers, so a running server notices a
-- change made by another process (the CLI) by reading one number.
CREATE TABLE mcp_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO mcp_revision (id, revision) VALUES (1, 0);
-- Every tool call through Orchard's MCP port: when, by which key, which
-- tool, how long, and how it ended.
CREATE TABLE mcp_calls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    client      TEXT,
    tool        TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE INDEX mcp_calls_at ON mcp_calls (at);
