-- Responses kept for `previous_response_id` (the Responses API with
-- `store: true`). `items` is the conversation as Responses items, input and
-- output, which a follow-up continues; `body` is the response object as sent.
CREATE TABLE responses (
    id         TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    model      TEXT NOT NULL,
    items      TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX responses_created_at ON responses (created_at);
