-- When each model was last loaded or used, for the library's "last used".
CREATE TABLE model_usage (
    model     TEXT PRIMARY KEY NOT NULL,
    last_used INTEGER NOT NULL
);
