-- Seed data: bixa, kitty and rex, with fixed ids the people seed refers to.
-- The identity sequence moves past them so new pets do not collide.
INSERT INTO pets (id, name, created_ms) VALUES (1, 'bixa', 0), (2, 'kitty', 0), (3, 'rex', 0)
    ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('pets', 'id'), (SELECT max(id) FROM pets));
