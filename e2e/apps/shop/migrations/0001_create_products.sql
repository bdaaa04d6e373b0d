-- v1: the catalogue.
CREATE TABLE products (
  id serial PRIMARY KEY,
  name text NOT NULL
);
INSERT INTO products (name) VALUES ('teapot'), ('kettle');
