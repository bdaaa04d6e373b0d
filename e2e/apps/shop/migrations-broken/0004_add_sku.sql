-- The broken build: the index names a column that does not exist ("skew"), so the migration fails
-- and its transaction leaves the schema as it was.
ALTER TABLE products ADD COLUMN sku text;
CREATE UNIQUE INDEX products_sku ON products (skew);
