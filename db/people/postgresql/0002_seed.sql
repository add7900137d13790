-- Seed data: bob owns bixa (pet 1) and rex (pet 3); jane owns none.
-- Pet ids are those of db/pets/postgresql/0002_seed.sql. The identity
-- sequence moves past the seeded ids so new people do not collide.
INSERT INTO people (id, name, created_ms) VALUES (1, 'bob', 0), (2, 'jane', 0)
    ON CONFLICT DO NOTHING;
INSERT INTO ownership (person_id, pet_id) VALUES (1, 1), (1, 3) ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('people', 'id'), (SELECT max(id) FROM people));
