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

t.test("the real-node latency tables from a made-up record (no world)", async (t) => {
  const { latencyTables, seen } = await import("./latency.ts");
  const { EPHEMERAL, probeCostTable } = await import("./probe-cost.ts");
  const s = new Map<string, number>();
  const probes = new Map<string, number>();
  const rounds = [1, 2].map((i) => {
    const base = i * 100_000;
    const [uid, probe, digest, job, podUid] = [`pod${i}`, `probe${i}`, `sha256:${i}`, `presync-${i}`, `plain${i}`];
    probes.set(probe, base + 200);
    const marks: [string, number][] = [
      [seen.pod(uid, "created"), 0],
      [seen.pod(uid, "scheduled"), 5],
      [seen.pod(probe, "created"), 200],
      [seen.event(probe, "probe", "Pulling"), 600],
      [seen.event(probe, "probe", "Pulled"), 650],
      [seen.pod(probe, "imageID"), 1100],
      [seen.pod(uid, "pinned"), 1150],
      [seen.pod(uid, "pinReported"), 3300],
      [seen.job(digest, "created"), 1250],
      [seen.job(digest, "succeeded"), 3000],
      [seen.recorded(digest), 3030],
      [seen.pod(uid, "released"), 3600],
      [seen.event(uid, "app", "Pulling"), 3700],
      [seen.event(uid, "app", "Pulled"), 3750],
      [seen.pod(uid, "running"), 4500],
      [seen.poller(digest), 5000],
      [seen.job(job, "created"), 50_020],
      [seen.job(job, "succeeded"), 52_000],
      [seen.pod(podUid, "created"), 52_040],
      [seen.pod(podUid, "running"), 53_000],
    ];
    for (const [key, at] of marks) s.set(key, base + at);
    return {
      gated: { uid, digest, start: base, end: base + 5000 },
      presync: { job, podUid, digest, start: base + 50_000 },
    };
  });
  const [gated, presync] = latencyTables(rounds, s, probes);
  t.match(gated?.title, /^Latency on the real node, mutable tag \(2 migrations\)/);
  const row = (label: RegExp) => gated?.rows.find((r) => label.test(r[0] ?? ""));
  t.same(row(/^pod created → probe created/)?.slice(1, 4), ["2", "200 ms", "200 ms"]);
  t.same(row(/^probe created → probe Pulling/)?.slice(1, 3), ["2", "400 ms"]);
  t.same(row(/less the Job and the probe's pull/)?.slice(1, 7), [
    "2",
    "1800 ms",
    "1800 ms",
    "1800 ms",
    "≤ 2000 ms",
    "yes",
  ]);
  t.same(row(/^status recorded → 5 s polling/)?.slice(1, 3), ["2", "1970 ms"]);
  t.same(row(/^pin patch → the kubelet reports it/)?.slice(1, 3), ["2", "2150 ms"]);
  t.same(row(/^later of status recorded and pin reported/)?.slice(1, 3), ["2", "300 ms"]);
  t.match(presync?.title, /^PreSync-hook-style flow/);
  t.same(presync?.rows.at(-1)?.slice(0, 3), ["start → app container running (whole flow)", "2", "3000 ms"]);

  const cost = probeCostTable({ "as built": [], hostNetwork: [] }, s);
  t.same(cost.columns, ["step", "as built: p50 / p95", "hostNetwork: p50 / p95"]);
  t.equal(cost.rows[0]?.[1], "– / –", "no rounds: no figure");

  // The ephemeral way is timed from the container showing in the pod's spec to its own status.
  const e = new Map<string, number>([
    [seen.pod("held", "created"), 0],
    [seen.pod("held", "ephemeral"), 4000],
    [seen.event("held", "probe", "Pulling"), 4100],
    [seen.event("held", "probe", "Pulled"), 4150],
    [seen.pod("held", "imageID"), 9000],
    [seen.pod("held", "ephemeralImageID"), 4400],
  ]);
  const both = probeCostTable({ "as built": [], [EPHEMERAL]: ["held"] }, e);
  t.same(
    both.rows.map((r) => r[2]),
    ["100 ms / 100 ms", "50 ms / 50 ms", "250 ms / 250 ms", "400 ms / 400 ms"],
  );
  t.match(both.notes?.at(-1), /^ephemeral container in the pod: /);
});
