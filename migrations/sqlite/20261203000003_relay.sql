-- Per relay (one per stream): the last event published and acknowledged by
-- JetStream, in the log's gap-safe (tx_id, position) order. Kept with the
-- event store, apart from the projections, so that rebuilding projections
-- never republishes history.
CREATE TABLE relay_cursors
(
    relay      text        PRIMARY KEY,
    tx_id      integer     NOT NULL,
    position   integer     NOT NULL,
    updated_at text NOT NULL
);
