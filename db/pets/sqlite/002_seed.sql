-- Seed data: bixa, kitty and rex, with fixed ids the people seed refers to.
INSERT OR IGNORE INTO pets (id, name, created_ms) VALUES (1, 'bixa', 0), (2, 'kitty', 0), (3, 'rex', 0);
