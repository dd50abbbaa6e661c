-- Read models, maintained by a projector from the event log. See
-- docs/projections.md. Every table can be queried directly by a dashboard.
-- Tables updated in place on every projected batch leave half of each page
-- free (fillfactor 50), so an update can stay on its page and skip the
-- index (a HOT update): the projector's writes are most of the database's
-- work under load.

-- Per workspace: the last event sequence applied to the tables of this
-- database, written in the same transaction as the rows it produced. Every
-- projector writing into this database shares it, so an event is applied
-- exactly once however many projectors (or re-deliveries) bring it.
CREATE TABLE projection_offsets
(
    workspace_id  text   PRIMARY KEY,
    last_sequence bigint NOT NULL
) WITH (fillfactor = 50);

-- Per projector: how far it has read the whole log, in (tx_id, position)
-- order; where it resumes after a restart.
CREATE TABLE projector_cursors
(
    projector  text        PRIMARY KEY,
    tx_id      bigint      NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE key_view
(
    workspace_id text        NOT NULL,
    key_id       text        NOT NULL,
    provider     text        NOT NULL,
    masked       text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('active', 'superseded', 'removed')),
    added_seq    bigint      NOT NULL,
    added_at     timestamptz NOT NULL,
    added_by     text        NOT NULL,
    ended_at     timestamptz,
    ended_by     text,
    PRIMARY KEY (workspace_id, key_id)
);

CREATE TABLE billing_mode
(
    workspace_id     text PRIMARY KEY,
    byo_enabled      boolean NOT NULL,
    changed_at       timestamptz,
    changed_by       text,
    openai_key_id    text,
    openai_masked    text,
    anthropic_key_id text,
    anthropic_masked text
);

CREATE TABLE credit_balances
(
    workspace_id text PRIMARY KEY,
    balance      bigint NOT NULL CHECK (balance >= 0),
    granted      bigint NOT NULL CHECK (granted >= 0),
    spent        bigint NOT NULL CHECK (spent >= 0)
) WITH (fillfactor = 50);

CREATE TABLE credit_ledger
(
    workspace_id  text        NOT NULL,
    seq           bigint      NOT NULL,
    at            timestamptz NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('grant', 'charge')),
    amount        bigint      NOT NULL,
    balance_after bigint      NOT NULL CHECK (balance_after >= 0),
    reply_id      text,
    grant_id      text,
    model         text,
    PRIMARY KEY (workspace_id, seq)
);

CREATE TABLE usage_daily
(
    workspace_id    text   NOT NULL,
    day             date   NOT NULL,
    route           text   NOT NULL CHECK (route IN ('credits', 'byo', 'local', 'unmetered')),
    model           text   NOT NULL,
    replies         bigint NOT NULL,
    credits_charged bigint NOT NULL,
    list_cost       bigint NOT NULL,
    PRIMARY KEY (workspace_id, day, route, model)
) WITH (fillfactor = 50);
