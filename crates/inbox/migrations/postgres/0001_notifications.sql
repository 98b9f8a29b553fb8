-- The notification inbox. A row with a user_id belongs to that user and keeps its own read and
-- dismissed times; a row whose user_id is NULL is for the whole tenant, and each user's read and
-- dismissed times for it are in receipts. NULL cannot collide with any user's id.
-- Times are Unix milliseconds. Identity values are never reused, so that a list cursor (an id)
-- never points past a newer notification.

CREATE TABLE notifications (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       TEXT   NOT NULL,
    user_id      TEXT,
    title        TEXT   NOT NULL,
    message      TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    priority     TEXT   NOT NULL,
    read_at      BIGINT,
    dismissed_at BIGINT,
    created_at   BIGINT NOT NULL,
    action_url   TEXT,
    action_label TEXT,
    metadata     TEXT,
    data         TEXT
);

-- A user's own rows, newest first: listing, retention.
CREATE INDEX notifications_owner ON notifications (tenant, user_id, id);
-- A reader's counts, read from the index alone: not dismissed, unread, by priority.
CREATE INDEX notifications_badge ON notifications (tenant, user_id, dismissed_at, read_at, priority);
-- A tenant's tenant-wide rows, newest first.
CREATE INDEX notifications_tenant_wide ON notifications (tenant, id) WHERE user_id IS NULL;
-- Pruning by age.
CREATE INDEX notifications_created ON notifications (created_at);

CREATE TABLE receipts (
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id         TEXT   NOT NULL,
    read_at         BIGINT,
    dismissed_at    BIGINT,
    PRIMARY KEY (notification_id, user_id)
);
