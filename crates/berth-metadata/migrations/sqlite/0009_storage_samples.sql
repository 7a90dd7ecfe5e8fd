-- The registry's size over time: one sample an hour of the blob records'
-- count and bytes, taken by whichever node's housekeeping comes first (the
-- hour is the key, so nodes never sample one hour twice). The portal draws
-- it; nothing else reads it.
CREATE TABLE storage_samples (
    hour   INTEGER NOT NULL PRIMARY KEY, -- unix seconds / 3600
    blobs  INTEGER NOT NULL,
    bytes  INTEGER NOT NULL
);
