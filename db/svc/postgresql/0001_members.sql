-- The live workers of every service that keeps its data in this database,
-- on every host. Each worker upserts its row once a second; a row whose
-- heartbeat is older than the TTL is not listed. Times are the database's
-- clock (now()), so hosts whose clocks differ still agree.
CREATE TABLE IF NOT EXISTS tcpops_members (
    service   text NOT NULL,
    address   text NOT NULL,
    pid       integer NOT NULL,
    heartbeat timestamptz NOT NULL,
    PRIMARY KEY (service, address)
);
