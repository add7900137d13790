-- pets: every pet by id. Names need not be unique (two cats may be "kitty").
-- members: the live workers of the service (membership).
CREATE TABLE IF NOT EXISTS pets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS members (
    address      TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL
);
