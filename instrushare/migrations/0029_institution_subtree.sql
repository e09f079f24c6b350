-- An institution filter means the chosen institutions and their sub-units, all levels down
-- (docs/metrics.md): the API walks the tree in its queries, and Grafana's panels call this,
-- whose multi-value $institution arrives as 'a','b':
--     i.institution_id IN (SELECT institution_subtree(ARRAY[$institution]))
-- UNION, not UNION ALL: it ends even on a cycle made before 0024. Unknown ids add nothing.
CREATE FUNCTION institution_subtree(ids text[]) RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH RECURSIVE tree(id) AS (
        SELECT id FROM institution WHERE id = ANY (ids)
        UNION
        SELECT c.id FROM institution c JOIN tree ON c.parent_id = tree.id
    )
    SELECT id FROM tree
$$;
