-- Messages a gateway's outbox dropped at its bounds (full, or older than its age limit), in
-- all since the outbox was created, as its latest birth said; null: it never said (a gateway
-- from before births carried it). Data lost at the edge is then visible on the platform.
ALTER TABLE gateway ADD COLUMN dropped bigint;
