import t from "tap";
import { REASONS } from "./migrator.ts";
import type { Migrator, MigratorStatus } from "./migrator.ts";
import { nextStatus, readyReason, statusChanged } from "./status.ts";

/** A deep copy with every object's keys sorted, as the API server returns custom resources. */
function sortedKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortedKeys) as T;
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => [k, sortedKeys(v)]),
  ) as T;
}

const migrator: Migrator = {
  apiVersion: "migrations.coderanger.net/v1beta1",
  kind: "Migrator",
  metadata: { name: "db", namespace: "ns", generation: 3 },
  spec: { selector: {} },
};
const now = new Date("2024-01-01T00:00:00Z");

t.test("conditions follow the decision", async (t) => {
  const cases = [
    { reason: REASONS.Succeeded, ready: true, readyStatus: "True", migrationsStatus: "True" },
    { reason: REASONS.Running, ready: false, readyStatus: "False", migrationsStatus: "False" },
    { reason: REASONS.WaitingForPods, ready: false, readyStatus: "True", migrationsStatus: "False" },
  ];
  for (const c of cases) {
    const s = nextStatus(undefined, migrator, { ready: c.ready, reason: c.reason, message: "m" }, now);
    t.equal(s.conditions?.find((x) => x.type === "Ready")?.status, c.readyStatus, `${c.reason}: Ready`);
    t.equal(
      s.conditions?.find((x) => x.type === "MigrationsReady")?.status,
      c.migrationsStatus,
      `${c.reason}: MigrationsReady`,
    );
    t.equal(s.observedGeneration, 3);
    t.equal(readyReason(s), c.reason);
  }
});

t.test("an unchanged status is not written again, whatever the key order", async (t) => {
  const first = nextStatus(
    undefined,
    migrator,
    { ready: false, reason: REASONS.Running, message: "m", currentDigest: "d" },
    now,
  );
  const fromServer: MigratorStatus = sortedKeys(first);
  const again = nextStatus(
    fromServer,
    migrator,
    { ready: false, reason: REASONS.Running, message: "m", currentDigest: "d" },
    new Date(),
  );
  t.notOk(statusChanged(fromServer, again));
  const changed = nextStatus(fromServer, migrator, { ready: false, reason: REASONS.Failed, message: "x" }, new Date());
  t.ok(statusChanged(fromServer, changed));
});
