-- A booking nobody starts using within the void period after its start becomes 'void': the
-- rest of its window is free again (the exclusion constraint covers only approved and
-- completed bookings), and the booking counts as a no-show (docs/metrics.md, "Bookings").
ALTER TABLE booking
    DROP CONSTRAINT booking_status_check,
    ADD CONSTRAINT booking_status_check CHECK (
        status IN ('requested', 'approved', 'rejected', 'cancelled', 'completed', 'void'));
-- the release looks only at approved bookings not yet over
CREATE INDEX booking_approved_end_idx ON booking (end_ts) WHERE status = 'approved';
