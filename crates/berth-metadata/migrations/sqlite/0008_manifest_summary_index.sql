-- What the portal's repository listing reads of each repository's
-- manifests (how many, their bytes, the newest push), from the index alone:
-- a manifest's row holds its content, and created_at lies past it (in
-- overflow pages on SQLite), so reading the rows would read every manifest.
CREATE INDEX manifests_summary ON manifests(repository_id, created_at, size);
