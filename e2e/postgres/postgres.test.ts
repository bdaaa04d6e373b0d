import fs from "node:fs";
import t from "tap";
import { startPostgres } from "./postgres.ts";

t.test("a throwaway PostgreSQL: databases are separate, stop removes everything", async (t) => {
  const pg = await startPostgres();
  t.teardown(() => pg.stop());
  const a = await pg.createDatabase("Harness-Test");
  const b = await pg.createDatabase("harness");
  t.match(a.name, /^harness_test_[0-9a-f]{8}$/);
  t.not(a.name, b.name);
  t.equal(a.url, `postgresql://postgres@127.0.0.1:${pg.port}/${a.name}`);
  await pg.query(a.name, "create table migrations (version int primary key)");
  await pg.query(a.name, "insert into migrations values ($1)", [1]);
  t.same(await pg.query(a.name, "select version from migrations"), [{ version: 1 }]);
  await t.rejects(pg.query(b.name, "select * from migrations"), /relation "migrations" does not exist/);
  const [row] = await pg.query<{ v: string }>("postgres", "select current_setting('server_version') as v");
  t.match(row?.v ?? "", /^15\./);

  await pg.stop();
  t.notOk(fs.existsSync(pg.dir), "data directory removed");
  await t.rejects(pg.query("postgres", "select 1"), /ECONNREFUSED/);
});

t.test("two servers run side by side on different ports", async (t) => {
  const [p1, p2] = await Promise.all([startPostgres(), startPostgres()]);
  t.teardown(() => Promise.all([p1.stop(), p2.stop()]));
  t.not(p1.port, p2.port);
  t.same(await p2.query("postgres", "select 1 as one"), [{ one: 1 }]);
});
