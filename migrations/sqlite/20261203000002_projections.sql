-- SQLite twin of the Postgres projections (times are RFC 3339 text).
-- Read models, maintained by a projector from the event log. See
-- docs/projections.md. Every table can be queried directly by a dashboard.

-- Per workspace: the last event sequence applied to the tables of this
-- database, written in the same transaction as the rows it produced. Every
-- projector writing into this database shares it, so an event is applied
-- exactly once however many projectors (or re-deliveries) bring it.
CREATE TABLE projection_offsets
(
    workspace_id  text   PRIMARY KEY,
    last_sequence integer NOT NULL
);

-- Per projector: how far it has read the whole log, in (tx_id, position)
-- order; where it resumes after a restart.
CREATE TABLE projector_cursors
(
    projector  text        PRIMARY KEY,
    tx_id      integer      NOT NULL,
    position   integer      NOT NULL,
    updated_at text NOT NULL
);

CREATE TABLE key_view
(
    workspace_id text        NOT NULL,
    key_id       text        NOT NULL,
    provider     text        NOT NULL,
    masked       text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('active', 'superseded', 'removed')),
    added_seq    integer      NOT NULL,
    added_at     text NOT NULL,
    added_by     text        NOT NULL,
    ended_at     text,
    ended_by     text,
    PRIMARY KEY (workspace_id, key_id)
);

CREATE TABLE billing_mode
(
    workspace_id     text PRIMARY KEY,
    byo_enabled      boolean NOT NULL,
    changed_at       text,
    changed_by       text,
    openai_key_id    text,
    openai_masked    text,
    anthropic_key_id text,
    anthropic_masked text
);

CREATE TABLE credit_balances
(
    workspace_id text PRIMARY KEY,
    balance      integer NOT NULL CHECK (balance >= 0),
    granted      integer NOT NULL CHECK (granted >= 0),
    spent        integer NOT NULL CHECK (spent >= 0)
);

CREATE TABLE credit_ledger
(
    workspace_id  text        NOT NULL,
    seq           integer      NOT NULL,
    at            text NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('grant', 'charge')),
    amount        integer      NOT NULL,
    balance_after integer      NOT NULL CHECK (balance_after >= 0),
    reply_id      text,
    grant_id      text,
    model         text,
    PRIMARY KEY (workspace_id, seq)
);

CREATE TABLE usage_daily
(
    workspace_id    text   NOT NULL,
    day             text   NOT NULL,
    route           text   NOT NULL CHECK (route IN ('credits', 'byo', 'local', 'unmetered')),
    model           text   NOT NULL,
    replies         integer NOT NULL,
    credits_charged integer NOT NULL,
    list_cost       integer NOT NULL,
    PRIMARY KEY (workspace_id, day, route, model)
);
