// The resource actions in gopher-lua, opened as Argo CD opens it (lua.ts): discovery (action_test.yaml and every reason), and the
// retry action, which must change migrations.coderanger.net/retry and nothing else.
import t from "tap";
import { ANNOTATIONS, CONDITION_MIGRATIONS_READY, CONDITION_READY, REASONS } from "@digest-migrations/shared";
import type { Migrator } from "@digest-migrations/shared";
import { discoverActions, runAction } from "./lua.ts";
import { discoveryCases } from "./testcases.ts";
import { actionNames } from "./snippet.ts";

t.test("every action_test.yaml discovery case", async (t) => {
  const cases = discoveryCases();
  t.ok(cases.length >= 5, `${cases.length} cases found`);
  for (const c of cases) {
    const got = discoverActions(c.object);
    const expected = Object.fromEntries(c.expected.map(({ name, ...action }) => [name, action]));
    t.same(got, expected, c.name);
  }
});

function migrator(
  type: string,
  status: "True" | "False",
  reason: string,
  annotations?: Record<string, string>,
): Migrator {
  return {
    apiVersion: "migrations.coderanger.net/v1beta1",
    kind: "Migrator",
    metadata: { name: "app", namespace: "ns", generation: 1, ...(annotations ? { annotations } : {}) },
    spec: { selector: { matchLabels: { app: "app" } }, command: ["migrate"] },
    status: {
      observedGeneration: 1,
      currentJob: "app-3f2a",
      conditions: [{ type, status, reason, message: "m", lastTransitionTime: "2024-05-01T10:00:00Z" }],
    },
  };
}

t.test("retry is offered exactly when the migration failed", async (t) => {
  t.same(actionNames(), ["retry"], "the actions directory holds the retry action");
  for (const type of [CONDITION_READY, CONDITION_MIGRATIONS_READY]) {
    for (const reason of Object.values(REASONS)) {
      for (const status of ["True", "False"] as const) {
        const enabled = status === "False" && reason === REASONS.Failed;
        t.equal(
          discoverActions(migrator(type, status, reason))["retry"]?.disabled,
          !enabled,
          `${type}=${status} ${reason}`,
        );
      }
    }
  }
  const noStatus = migrator(CONDITION_READY, "False", REASONS.Failed);
  delete noStatus.status;
  t.equal(discoverActions(noStatus)["retry"]?.disabled, true, "no status: nothing to retry");
});

t.test("retry sets the retry annotation to the current time and changes nothing else", async (t) => {
  const now = new Date("2024-05-01T10:11:12.345Z");
  const stamp = "2024-05-01T10:11:12Z";
  const cases: Array<[string, Record<string, string> | undefined, string]> = [
    ["no annotations yet", undefined, stamp],
    ["other annotations kept", { "example.com/owner": "team-a" }, stamp],
    ["an older retry replaced", { [ANNOTATIONS.retry]: "2024-04-30T08:00:00Z" }, stamp],
    ["a retry within the same second still changes the value", { [ANNOTATIONS.retry]: stamp }, `${stamp}.1`],
    ["and the one after that too", { [ANNOTATIONS.retry]: `${stamp}.1` }, stamp],
  ];
  for (const [name, annotations, expected] of cases) {
    const before = migrator(CONDITION_READY, "False", REASONS.Failed, annotations);
    const after = runAction("retry", before, { now });
    const want = structuredClone(before);
    want.metadata.annotations = { ...annotations, [ANNOTATIONS.retry]: expected };
    t.same(after, want, name);
  }
});

t.test("retry with the real clock writes an RFC 3339 UTC time", async (t) => {
  const start = Math.floor(Date.now() / 1000) * 1000;
  const after = runAction("retry", migrator(CONDITION_READY, "False", REASONS.Failed)) as Migrator;
  const value = after.metadata.annotations?.[ANNOTATIONS.retry] ?? "";
  t.match(value, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const at = Date.parse(value);
  t.ok(at >= start && at <= Date.now(), `${value} is now`);
});
