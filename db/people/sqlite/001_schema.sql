-- people: who exists (oldest first by id) and which pets (by pets-service id)
-- each one owns. members: the live workers of the service (membership).
CREATE TABLE IF NOT EXISTS people (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS ownership (
    person_id INTEGER NOT NULL REFERENCES people(id),
    pet_id    INTEGER NOT NULL CHECK (pet_id > 0),
    PRIMARY KEY (person_id, pet_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS members (
    address      TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL
);
