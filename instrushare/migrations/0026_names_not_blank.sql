-- Institutions and instruments are called something: the API refuses a name of white space
-- only, and the database does too. A blank name stored before is replaced by the row's id, so
-- that every row still reads (the API's models check names when they answer, too).
UPDATE institution SET name = id WHERE name !~ '\S';
UPDATE instrument SET name = id WHERE name !~ '\S';
ALTER TABLE institution ADD CONSTRAINT institution_name_not_blank CHECK (name ~ '\S');
ALTER TABLE instrument ADD CONSTRAINT instrument_name_not_blank CHECK (name ~ '\S');
