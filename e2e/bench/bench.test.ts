// Smoke test of the benchmark pipeline: the quick render and waiter benchmarks run end to end (real
// plugin and waiter bundles, real kubectl, generated tree) and print their tables. The figures are
// not asserted: they depend on the machine.
import t from "tap";
import { runBench } from "./bench.ts";

t.test("quick render and waiter benchmarks produce their tables", async (t) => {
  const report = await runBench({ quick: true, sections: ["render", "waiter"], sizes: [100], runs: 1, log: () => {} });
  const titles = report.tables.map((table) => table.title);
  t.match(titles, [/^Render time/, /^Render peak RSS/, /^Waiter footprint/, /^Growth/]);

  const time = report.tables[0]!;
  t.same(
    time.rows.map((r) => r.slice(0, 2)),
    [
      ["100", "plain"],
      ["100", "Kustomize"],
      ["100", "plain, compile cache"],
      ["100", "Kustomize, compile cache"],
    ],
  );
  for (const column of ["plugin generate", "kubectl kustomize", "floor: js-yaml", "node -e 0"]) {
    const i = time.columns.indexOf(column);
    t.ok(i >= 0, `render table has a ${column} column`);
    for (const row of time.rows) t.match(row[i], /^\d+\.\d\d s \(\d+\.\d\d–\d+\.\d\d\)$/, `${column}: a measured time`);
  }
  const rss = report.tables[1]!;
  t.match(rss.rows[0], ["100", /MB$/, /^\d+ MB$/, /^\d+ MB$/, /^\d+ MB$/, /^\d+ MB$/, /^\d+ MB$/, /^\d+ MB$/]);

  const waiter = report.tables[2]!;
  t.equal(waiter.rows.length, 6);
  for (const row of waiter.rows) t.match(row[1], /\d/, `waiter: ${row[0]} measured`);

  t.match(report.text, /### Render time/);
  t.match(report.text, /\| 100 +\| plain +\|/);
  t.match(report.text, /### Waiter footprint/);
});
