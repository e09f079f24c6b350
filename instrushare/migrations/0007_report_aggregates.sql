-- Union of timestamp multiranges as an aggregate whose state is the multirange itself.
-- range_agg keeps an internal buffer the planner sizes at several kilobytes per group, so a
-- query grouping many (instrument, user) pairs with it falls back to sorting every session;
-- this one is hashed like a sum. Utilisation reports use it for the few session intervals
-- that touch booking windows (docs/metrics.md, "Bookings").
CREATE AGGREGATE multirange_union_agg(tstzmultirange) (
    SFUNC = multirange_union,
    STYPE = tstzmultirange,
    COMBINEFUNC = multirange_union,
    PARALLEL = SAFE
);
