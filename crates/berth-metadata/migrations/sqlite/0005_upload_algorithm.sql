-- The digest algorithm an upload session hashes with while it streams
-- (`POST ...?digest-algorithm=sha512`), so any node can rebuild its state.
ALTER TABLE uploads ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'sha256';
