-- Published information is reviewed before it is published (Shenyang measures art. 17-18):
-- registered users see an instrument only once an admin has listed it, and then its catalogue
-- entry as reviewed (``listing``), not the registry's live values, until the next review.
-- docs/api.md, "Catalogue review".

-- What the catalogue offers users: the fields they choose and book by.
CREATE FUNCTION catalogue_entry(i instrument) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'name', i.name, 'model', i.model, 'maker', i.maker, 'category_code', i.category_code,
        'location', i.location, 'open_to_outside', i.open_to_outside,
        'fee_schedule', i.fee_schedule)
$$;

ALTER TABLE instrument
    ADD COLUMN listing    jsonb,
    ADD COLUMN listed_at  timestamptz,
    ADD COLUMN listed_by  text;

-- Instruments registered before the review existed were already published.
UPDATE instrument i SET listing = catalogue_entry(i), listed_at = now(), listed_by = 'migration';
