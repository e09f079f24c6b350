-- A booking's purpose in the national platform's classes, so service records can be reported
-- in its shape (docs/metrics.md, "Service records"). Free text entered before is kept in the
-- note; such bookings become 'other'.
UPDATE booking
SET note = concat_ws('; ', nullif(note, ''), 'purpose: ' || purpose), purpose = 'other'
WHERE purpose NOT IN ('research', 'development', 'teaching', 'other') AND purpose <> '';
UPDATE booking SET purpose = 'other' WHERE purpose = '';
ALTER TABLE booking
    ALTER COLUMN purpose SET DEFAULT 'other',
    ADD CONSTRAINT booking_purpose
        CHECK (purpose IN ('research', 'development', 'teaching', 'other'));
