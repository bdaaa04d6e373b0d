-- The fixed build: the same migration, with the column spelt right.
ALTER TABLE products ADD COLUMN sku text;
CREATE UNIQUE INDEX products_sku ON products (sku);
