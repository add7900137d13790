-- Seed data: bob owns bixa (pet 1) and rex (pet 3); jane owns none.
-- Pet ids are those of db/pets/002_seed.sql.
INSERT OR IGNORE INTO people (id, name, created_ms) VALUES (1, 'bob', 0), (2, 'jane', 0);
INSERT OR IGNORE INTO ownership (person_id, pet_id) VALUES (1, 1), (1, 3);
