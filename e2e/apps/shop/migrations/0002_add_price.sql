-- v2: prices, in cents; existing products start free.
ALTER TABLE products ADD COLUMN price_cents integer NOT NULL DEFAULT 0;
UPDATE products SET price_cents = 1200 WHERE name = 'teapot';
