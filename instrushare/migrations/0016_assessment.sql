-- What the platform cannot measure (support of major research tasks, management quality):
-- a mark out of 100 per top-level institution and year, entered with a note by the
-- evaluation office; the evaluation weighs it with EvaluationRules.assessed_points
-- (docs/metrics.md, "Annual evaluation").
CREATE TABLE assessment (
    year            integer       NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    institution_id  text          NOT NULL REFERENCES institution (id),
    mark            numeric(5, 2) NOT NULL CHECK (mark BETWEEN 0 AND 100),
    note            text          NOT NULL CHECK (note <> ''),
    assessed_by     text          NOT NULL,
    assessed_at     timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (year, institution_id)
);
