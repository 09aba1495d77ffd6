-- Profiles: named ways to serve a model. `body` is the profile as JSON
-- (core reads and checks it), so new fields need no migration.
CREATE TABLE profiles (
    name       TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
