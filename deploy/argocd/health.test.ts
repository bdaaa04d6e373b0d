// health.lua in gopher-lua, opened as Argo CD opens it (lua.ts): the cases of every health_test.yaml under this directory, one
// hand-made Migrator per condition reason, and totality on arbitrary conditions.
import fc from "fast-check";
import t from "tap";
import { CONDITION_MIGRATIONS_READY, CONDITION_READY, REASONS } from "@digest-migrations/shared";
import type { Migrator, Reason } from "@digest-migrations/shared";
import { health } from "./lua.ts";
import type { HealthStatus } from "./lua.ts";
import { healthCases } from "./testcases.ts";

const cases = healthCases();

t.test("every health_test.yaml case", async (t) => {
  t.ok(cases.length >= 20, `${cases.length} cases found`);
  for (const c of cases) {
    const got = health(c.object);
    if (c.expected.message === undefined) t.equal(got.status, c.expected.status, c.name);
    else t.same(got, { status: c.expected.status, message: c.expected.message }, c.name);
  }
});

t.test("the cases cover every condition reason", async (t) => {
  const seen = new Set<string>();
  for (const c of cases) {
    for (const condition of (c.object as Migrator).status?.conditions ?? []) seen.add(condition.reason);
  }
  for (const reason of Object.values(REASONS)) t.ok(seen.has(reason), `a case with reason ${reason}`);
});

function migrator(reason: string, conditionStatus: "True" | "False" | "Unknown", status: object = {}): Migrator {
  return {
    apiVersion: "migrations.coderanger.net/v1beta1",
    kind: "Migrator",
    metadata: { name: "app", namespace: "ns", generation: 2 },
    spec: { selector: { matchLabels: { app: "app" } } },
    status: {
      observedGeneration: 2,
      currentJob: "app-3f2a",
      conditions: [
        {
          type: CONDITION_READY,
          status: conditionStatus,
          reason,
          message: `the ${reason} message`,
          lastTransitionTime: "2024-05-01T10:00:00Z",
        },
      ],
      ...status,
    },
  };
}

t.test("one verdict per reason", async (t) => {
  // The rules of health.lua, per reason of a Ready condition that is not "True".
  const expected: Record<Reason, HealthStatus> = {
    WaitingForPods: { status: "Healthy", message: "WaitingForPods: the WaitingForPods message" },
    WaitingForImageID: { status: "Progressing", message: "WaitingForImageID: the WaitingForImageID message" },
    Probing: { status: "Progressing", message: "Probing: the Probing message" },
    Running: { status: "Progressing", message: "Running: the Running message" },
    Succeeded: { status: "Unknown", message: "Ready is False with reason Succeeded: the Succeeded message" },
    Failed: { status: "Degraded", message: "Failed (Job app-3f2a): the Failed message" },
    ProbeFailed: { status: "Degraded", message: "ProbeFailed: the ProbeFailed message" },
    NoDigest: { status: "Degraded", message: "NoDigest: the NoDigest message" },
    PinFailed: { status: "Degraded", message: "PinFailed: the PinFailed message" },
    InvalidSpec: { status: "Degraded", message: "InvalidSpec: the InvalidSpec message" },
    TemplateNotFound: { status: "Degraded", message: "TemplateNotFound: the TemplateNotFound message" },
    UnsupportedRuntime: { status: "Degraded", message: "UnsupportedRuntime: the UnsupportedRuntime message" },
  };
  for (const reason of Object.values(REASONS)) {
    t.same(health(migrator(reason, "False")), expected[reason], `Ready=False ${reason}`);
  }
  t.same(health(migrator(REASONS.Succeeded, "True")), { status: "Healthy", message: "the Succeeded message" });
  t.same(
    health(migrator(REASONS.Failed, "False", { currentJob: undefined })),
    { status: "Degraded", message: "Failed: the Failed message" },
    "without status.currentJob the message names no Job",
  );
});

t.test("not observed yet", async (t) => {
  const noStatus = migrator("Running", "False");
  delete noStatus.status;
  t.same(health(noStatus), { status: "Progressing", message: "Waiting for the reconciler to observe this Migrator" });
  t.same(health(migrator(REASONS.Succeeded, "True", { observedGeneration: 1 })), {
    status: "Progressing",
    message: "Waiting for the reconciler to observe generation 2",
  });
  const noGeneration = migrator(REASONS.Failed, "False");
  delete noGeneration.metadata.generation;
  t.equal(health(noGeneration).status, "Degraded", "without metadata.generation the conditions decide");
});

t.test("health is total: any conditions give a valid status and never an error", async (t) => {
  const condition = fc.record({
    type: fc.constantFrom(CONDITION_READY, CONDITION_MIGRATIONS_READY, "Other"),
    status: fc.constantFrom("True", "False", "Unknown"),
    reason: fc.oneof(fc.constantFrom(...Object.values(REASONS)), fc.string({ maxLength: 6 })),
    message: fc.string({ maxLength: 10 }),
    observedGeneration: fc.integer({ min: 0, max: 3 }),
    lastTransitionTime: fc.constant("2024-05-01T10:00:00Z"),
  });
  const valid = new Set(["Healthy", "Progressing", "Degraded", "Unknown"]);
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 3 }),
      fc.array(condition, { maxLength: 3 }),
      fc.option(fc.string({ maxLength: 8 }), { nil: undefined }),
      (generation, conditions, currentJob) => {
        const m = migrator("Running", "False", { observedGeneration: 2, conditions, currentJob });
        m.metadata.generation = generation;
        const got = health(m);
        t.ok(valid.has(got.status), `status ${got.status}`);
        t.type(got.message, "string");
        if (generation > 2) t.equal(got.status, "Progressing", "a newer generation is always Progressing");
      },
    ),
    { numRuns: 30 },
  );
});
