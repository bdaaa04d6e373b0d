import t from "tap";
import fc from "fast-check";
import type { Pod } from "./k8s.ts";
import { REASONS } from "./migrator.ts";
import type { MigratorStatus } from "./migrator.ts";
import {
  compareNewestFirst,
  decideMigration,
  expiredJobs,
  failureText,
  isGated,
  recordMigration,
  resolvePodDigest,
  wantedDigest,
} from "./protocol.ts";
import type { JobView } from "./job.ts";
import type { Candidate, MigrationInput } from "./protocol.ts";

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const D3 = `sha256:${"3".repeat(64)}`;

function pod(
  over: { image?: string; imageID?: string; waiter?: "running" | "done" | "none"; name?: string } = {},
): Pod {
  const waiter = over.waiter ?? "running";
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: over.name ?? "web-1", namespace: "ns", creationTimestamp: "2024-01-01T00:00:00Z" },
    spec: {
      initContainers: waiter === "none" ? [] : [{ name: "migrate-wait-db", image: "waiter" }],
      containers: [{ name: "app", image: over.image ?? "registry.example/app:latest" }],
      nodeName: "node-1",
    },
    status: {
      initContainerStatuses:
        waiter === "none"
          ? []
          : [
              {
                name: "migrate-wait-db",
                image: "waiter",
                imageID: "",
                ready: false,
                state: waiter === "done" ? { terminated: { exitCode: 0 } } : { running: {} },
              },
            ],
      containerStatuses:
        over.imageID === undefined
          ? []
          : [{ name: "app", image: "registry.example/app:latest", imageID: over.imageID, ready: true }],
    },
  };
}

t.test("isGated", async (t) => {
  t.equal(isGated(pod({ waiter: "running" }), "db"), true, "waiter running");
  t.equal(isGated(pod({ waiter: "done" }), "db"), false, "waiter exited 0");
  t.equal(isGated(pod({ waiter: "none" }), "db"), false, "no waiter");
  t.equal(isGated(pod({ waiter: "running" }), "other"), false, "another Migrator's waiter");
});

t.test("resolvePodDigest follows the protocol's order", async (t) => {
  const cases: {
    name: string;
    pod: Pod;
    gated: boolean;
    want: ReturnType<typeof resolvePodDigest>["kind"];
    digest?: string;
  }[] = [
    {
      name: "pinned spec wins over status",
      pod: pod({ image: `app:1@${D1}`, imageID: `app@${D2}` }),
      gated: true,
      want: "digest",
      digest: D1,
    },
    {
      name: "status imageID",
      pod: pod({ imageID: `docker-pullable://registry.example/app@${D2}` }),
      gated: false,
      want: "digest",
      digest: D2,
    },
    { name: "gated and never pulled → probe", pod: pod(), gated: true, want: "needsProbe" },
    { name: "ungated and not pulled yet → kubelet pulls", pod: pod(), gated: false, want: "pulling" },
    { name: "config ID is not a digest", pod: pod({ imageID: `docker://${D3}` }), gated: false, want: "noDigest" },
    { name: "malformed imageID", pod: pod({ imageID: "app@sha256:zz" }), gated: false, want: "noDigest" },
  ];
  for (const c of cases) {
    const got = resolvePodDigest(c.pod, "app", c.gated);
    t.equal(got.kind, c.want, c.name);
    if (c.digest !== undefined) t.equal(got.kind === "digest" ? got.digest : undefined, c.digest, `${c.name}: digest`);
  }
});

const digestOf = (d: string): Candidate["resolution"] => ({ kind: "digest", digest: d, source: "status" });

t.test("wantedDigest: the newest pods decide", async (t) => {
  const cases: { name: string; candidates: Candidate[]; want: ReturnType<typeof wantedDigest> }[] = [
    { name: "no pods", candidates: [], want: { kind: "none" } },
    {
      name: "higher revision wins over later creation",
      candidates: [
        { name: "old", revision: "1", creationTimestamp: "2024-01-01T00:00:09Z", resolution: digestOf(D1) },
        { name: "new", revision: "2", creationTimestamp: "2024-01-01T00:00:01Z", resolution: digestOf(D2) },
      ],
      want: { kind: "digest", digest: D2, pod: "new" },
    },
    {
      name: "creation order without revisions",
      candidates: [
        { name: "a", creationTimestamp: "2024-01-01T00:00:09Z", resolution: digestOf(D3) },
        { name: "b", creationTimestamp: "2024-01-01T00:00:01Z", resolution: digestOf(D1) },
      ],
      want: { kind: "digest", digest: D3, pod: "a" },
    },
    {
      name: "the newest pod still probing: pending, not the older digest",
      candidates: [
        { name: "old", revision: "1", creationTimestamp: "2024-01-01T00:00:01Z", resolution: digestOf(D1) },
        { name: "new", revision: "2", creationTimestamp: "2024-01-01T00:00:02Z", resolution: { kind: "needsProbe" } },
      ],
      want: {
        kind: "pending",
        reason: REASONS.Probing,
        message: "probing the image digest of pod new on its node",
        pod: "new",
      },
    },
  ];
  for (const c of cases) t.same(wantedDigest(c.candidates), c.want, c.name);
  const noDigest = wantedDigest([{ name: "x", resolution: { kind: "noDigest", message: "m" } }]);
  t.equal(noDigest.kind === "pending" ? noDigest.reason : undefined, REASONS.NoDigest);
});

t.test("the newest-first order is total and independent of input order (no flapping)", async (t) => {
  const candidate = fc.record({
    name: fc.stringMatching(/^[a-z]{1,4}$/),
    revision: fc.option(fc.integer({ min: 1, max: 5 }).map(String), { nil: undefined }),
    creationTimestamp: fc.integer({ min: 0, max: 5 }).map((s) => `2024-01-01T00:00:0${s}Z`),
    resolution: fc.constantFrom(digestOf(D1), digestOf(D2), digestOf(D3)),
  });
  fc.assert(
    fc.property(fc.uniqueArray(candidate, { selector: (c) => c.name, minLength: 1, maxLength: 8 }), (list) => {
      const reversed = [...list].reverse();
      const a = wantedDigest(list);
      const b = wantedDigest(reversed);
      return JSON.stringify(a) === JSON.stringify(b);
    }),
  );
  t.ok(compareNewestFirst({ name: "a", resolution: digestOf(D1) }, { name: "a", resolution: digestOf(D1) }) === 0);
});

const jobName = (d: string): string => `db-${d.slice(7, 17)}`;
function input(over: Partial<MigrationInput>): MigrationInput {
  return { wanted: { kind: "digest", digest: D2, pod: "p" }, status: {}, jobs: [], jobName, ...over };
}
const job = (digest: string, state: JobView["state"], extra: Partial<JobView> = {}): JobView => ({
  name: jobName(digest),
  digest,
  state,
  ...extra,
});
const history = (...digests: string[]): MigratorStatus => ({
  lastSuccessfulMigration: digests[0],
  migratedDigests: digests.map((d) => ({ digest: d, image: `app@${d}`, job: jobName(d), completionTime: "t" })),
});

t.test("decideMigration", async (t) => {
  const cases: {
    name: string;
    input: MigrationInput;
    action: string;
    reason: string;
    ready: boolean;
    stale?: string[];
  }[] = [
    { name: "first digest: create its Job", input: input({}), action: "create", reason: REASONS.Running, ready: false },
    {
      name: "already migrated (rollback): no Job",
      input: input({ status: history(D1, D2) }),
      action: "none",
      reason: REASONS.Succeeded,
      ready: true,
    },
    {
      name: "Job running",
      input: input({ jobs: [job(D2, "active")] }),
      action: "none",
      reason: REASONS.Running,
      ready: false,
    },
    {
      name: "Job succeeded: record before anything else",
      input: input({ jobs: [job(D2, "succeeded"), job(D1, "failed")] }),
      action: "record",
      reason: REASONS.Running,
      ready: false,
      stale: [],
    },
    {
      name: "Job failed: no retry without a new retry value",
      input: input({ jobs: [job(D2, "failed", { retry: "1" })], retry: "1" }),
      action: "none",
      reason: REASONS.Failed,
      ready: false,
    },
    {
      name: "Job failed and never retried: stays failed",
      input: input({ jobs: [job(D2, "failed")] }),
      action: "none",
      reason: REASONS.Failed,
      ready: false,
    },
    {
      name: "Job failed, new retry value: retry",
      input: input({ jobs: [job(D2, "failed", { retry: "1" })], retry: "2" }),
      action: "retry",
      reason: REASONS.Running,
      ready: false,
    },
    {
      name: "failed, new retry value, but another digest's Job runs: the retry waits for it",
      input: input({ jobs: [job(D2, "failed", { retry: "1" }), job(D1, "active")], retry: "2" }),
      action: "none",
      reason: REASONS.Running,
      ready: false,
      stale: [],
    },
    {
      name: "another digest still migrating: wait for it, never interrupt",
      input: input({ jobs: [job(D1, "active")] }),
      action: "none",
      reason: REASONS.Running,
      ready: false,
      stale: [],
    },
    {
      name: "finished Jobs of other digests are stale once recorded or failed",
      input: input({ status: history(D1), jobs: [job(D1, "succeeded"), job(D3, "failed"), job(D2, "active")] }),
      action: "none",
      reason: REASONS.Running,
      ready: false,
      stale: [jobName(D1), jobName(D3)],
    },
    {
      name: "the wanted digest's Job stays after success",
      input: input({ status: history(D2, D1), jobs: [job(D2, "succeeded"), job(D1, "succeeded")] }),
      action: "none",
      reason: REASONS.Succeeded,
      ready: true,
      stale: [jobName(D1)],
    },
    {
      name: "no pods, nothing migrated",
      input: input({ wanted: { kind: "none" } }),
      action: "none",
      reason: REASONS.WaitingForPods,
      ready: false,
    },
    {
      name: "no pods, migrated before: ready, nothing deleted",
      input: input({ wanted: { kind: "none" }, status: history(D1), jobs: [job(D1, "succeeded")] }),
      action: "none",
      reason: REASONS.Succeeded,
      ready: true,
      stale: [],
    },
    {
      name: "pending newest pod: no Job, nothing deleted",
      input: input({
        wanted: { kind: "pending", reason: REASONS.Probing, message: "m", pod: "p" },
        jobs: [job(D1, "failed")],
      }),
      action: "none",
      reason: REASONS.Probing,
      ready: false,
      stale: [],
    },
  ];
  for (const c of cases) {
    const got = decideMigration(c.input);
    t.equal(got.action.kind, c.action, `${c.name}: action`);
    t.equal(got.reason, c.reason, `${c.name}: reason`);
    t.equal(got.ready, c.ready, `${c.name}: ready`);
    if (c.stale !== undefined) t.same(got.stale, c.stale, `${c.name}: stale`);
  }
  const created = decideMigration(input({}));
  t.same(created.action, { kind: "create", digest: D2 });
  t.equal(created.currentJob, jobName(D2));
});

t.test(
  "a failed Job's message says why it failed: the deadline, the retries, the Job controller's reason",
  async (t) => {
    const failed = (extra: Partial<JobView>) => decideMigration(input({ jobs: [job(D2, "failed", extra)] }));
    const deadline = failed({
      activeDeadlineSeconds: 600,
      failure: { reason: "DeadlineExceeded", message: "Job was active longer than specified deadline" },
    });
    t.equal(deadline.reason, REASONS.Failed, "still Failed: Degraded in Argo CD, a Warning Event");
    t.equal(deadline.action.kind, "none", "no retry of its own");
    t.match(
      deadline.message,
      /^Job db-2222222222 ran past its deadline of 600 s \(spec\.activeDeadlineSeconds\) and was stopped before it migrated sha256:2{64} \(DeadlineExceeded\); pods running it stay gated\. Fix the cause or raise spec\.activeDeadlineSeconds, then set the annotation migrations\.coderanger\.net\/retry to a new value, or push a new image$/,
    );
    const backoff = failed({
      backoffLimit: 2,
      failedPods: 3,
      failure: { reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" },
    });
    t.match(
      backoff.message,
      /^Job db-2222222222 failed to migrate sha256:2{64}: 3 pod\(s\) failed, 2 retries allowed \(spec\.backoffLimit\); pods running it stay gated\. Fix the cause, then/,
    );
    t.match(
      failed({ backoffLimit: 0, failure: { reason: "BackoffLimitExceeded", message: "x" } }).message,
      /^Job db-2222222222 failed to migrate sha256:2{64}; pods/,
    );
    t.match(
      failed({}).message,
      /^Job db-2222222222 failed to migrate sha256:2{64}; pods running it stay gated/,
      "no condition yet",
    );
    t.equal(
      failureText(job(D2, "failed", { failure: { reason: "PodFailurePolicy", message: "rule 1" } }), D2),
      `Job db-2222222222 failed to migrate ${D2} (PodFailurePolicy: rule 1)`,
      "another reason is quoted",
    );
  },
);

t.test("expiredJobs: recorded successes past their time to live, nothing else", async (t) => {
  const now = new Date("2026-12-01T10:10:00Z");
  const done = (d: string, completionTime?: string) => job(d, "succeeded", completionTime ? { completionTime } : {});
  const status = history(D1, D2);
  t.same(
    expiredJobs([done(D1, "2026-12-01T10:00:00Z")], status, 600, now),
    { expired: [jobName(D1)] },
    "exactly at its end",
  );
  t.same(
    expiredJobs([done(D1, "2026-12-01T10:00:01Z")], status, 600, now),
    { expired: [], nextInMs: 1000 },
    "a second early",
  );
  t.same(expiredJobs([done(D3, "2026-12-01T09:00:00Z")], status, 60, now), { expired: [] }, "not recorded: kept");
  t.same(
    expiredJobs([job(D1, "failed"), job(D2, "active")], status, 0, now),
    { expired: [] },
    "failed or running: kept",
  );
  const fromRecord = {
    ...status,
    migratedDigests: status.migratedDigests!.map((r) => ({ ...r, completionTime: "2026-12-01T10:09:00Z" })),
  };
  t.same(
    expiredJobs([done(D1)], fromRecord, 30, now),
    { expired: [jobName(D1)] },
    "the record's completionTime without the Job's",
  );
  t.same(expiredJobs([done(D1)], status, 30, now), { expired: [] }, "no time known: kept");
});

t.test("recordMigration keeps a bounded, deduplicated history, newest first", async (t) => {
  const rec = (d: string) => ({ digest: d, image: `app@${d}`, job: jobName(d), completionTime: "t" });
  let status: MigratorStatus = {};
  status = recordMigration(status, rec(D1), 2);
  status = recordMigration(status, rec(D2), 2);
  status = recordMigration(status, rec(D1), 2);
  t.equal(status.lastSuccessfulMigration, D1);
  t.equal(status.lastSuccessfulMigrationShort, D1.slice(0, "sha256:".length + 12), "the printer column's short form");
  t.same(
    status.migratedDigests?.map((r) => r.digest),
    [D1, D2],
  );
  status = recordMigration(status, rec(D3), 2);
  t.same(
    status.migratedDigests?.map((r) => r.digest),
    [D3, D1],
  );
  t.throws(() => recordMigration({}, { ...rec(D1), digest: "latest" }), /cannot record/);
});
