-- Model folders the user registered (outside the Hugging Face cache), served
-- under `name`.
CREATE TABLE local_models (
    name     TEXT PRIMARY KEY NOT NULL,
    path     TEXT NOT NULL UNIQUE,
    added_at TEXT NOT NULL
);
