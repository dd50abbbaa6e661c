-- SQLite twin of migrations/postgres/20261203000001_events.sql: the same
-- tables and columns. Times are RFC 3339 text (as sqlx writes chrono values).
-- SQLite has one writer at a time and commits in order, so `position` (the
-- rowid) is already a gap-safe global order; tx_id is always 0.
CREATE TABLE events
(
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type  text    NOT NULL,
    aggregate_id    text    NOT NULL,
    sequence        integer NOT NULL CHECK (sequence >= 1),
    event_type      text    NOT NULL,
    event_version   text    NOT NULL,
    payload         text    NOT NULL,
    metadata        text    NOT NULL,
    tx_id           integer NOT NULL DEFAULT 0,
    recorded_at     text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    idempotency_key text
);
CREATE UNIQUE INDEX events_stream ON events (aggregate_type, aggregate_id, sequence);
CREATE UNIQUE INDEX events_idempotency ON events (aggregate_type, aggregate_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE workspace_snapshots
(
    workspace_id  text PRIMARY KEY,
    last_sequence integer NOT NULL,
    payload       text    NOT NULL,
    taken_at      text    NOT NULL
);

CREATE TABLE key_secrets
(
    workspace_id text NOT NULL,
    key_id       text NOT NULL,
    provider     text NOT NULL,
    sealed       text NOT NULL,
    created_at   text NOT NULL,
    PRIMARY KEY (workspace_id, key_id)
);
