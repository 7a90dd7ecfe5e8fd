-- When a manifest was last pulled (Unix seconds; NULL: not since it was
-- stored). The artifact cache evicts content unused for a rule's N days.
-- Written at most hourly per manifest and node, so pulls stay reads.
ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER;
