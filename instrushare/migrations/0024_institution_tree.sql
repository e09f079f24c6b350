-- Institutions form a tree: a unit under itself, or under one of its own sub-units, would
-- drop its instruments from every report that walks the tree. The trigger refuses a parent
-- that is the institution or below it (UNION, not UNION ALL: it ends even on a cycle made
-- before this migration, which it leaves for an admin to break).
CREATE FUNCTION institution_stays_a_tree() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS NOT NULL AND EXISTS (
        WITH RECURSIVE above(id, parent_id) AS (
            SELECT NEW.parent_id, (SELECT parent_id FROM institution WHERE id = NEW.parent_id)
            UNION
            SELECT i.id, i.parent_id FROM institution i JOIN above a ON i.id = a.parent_id
        )
        SELECT 1 FROM above WHERE id = NEW.id
    ) THEN
        RAISE EXCEPTION 'institution % cannot be under %: that would put it under itself',
            NEW.id, NEW.parent_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER institution_stays_a_tree BEFORE INSERT OR UPDATE OF parent_id ON institution
    FOR EACH ROW EXECUTE FUNCTION institution_stays_a_tree();
