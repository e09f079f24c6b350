-- Published institutions gained open_share (the share of their instruments shared with
-- outside users): computed for results published before, from their own instruments.
UPDATE evaluation_publication p SET institutions = (
    SELECT jsonb_agg(
        CASE WHEN inst ? 'open_share' THEN inst
             ELSE inst || jsonb_build_object('open_share', coalesce((
                 SELECT round(avg((i ->> 'sharing_mode' = 'external')::int), 4)
                 FROM jsonb_array_elements(p.instruments) AS i
                 WHERE i ->> 'root_id' = inst ->> 'institution_id'), 0))
        END ORDER BY n)
    FROM jsonb_array_elements(p.institutions) WITH ORDINALITY AS t(inst, n))
WHERE jsonb_array_length(p.institutions) > 0;
