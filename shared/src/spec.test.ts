import t from "tap";
import { migratorSpecProblem } from "./spec.ts";

const selector = { matchLabels: { app: "web" } };

t.test("a usable spec has no problem", async (t) => {
  t.equal(migratorSpecProblem({ selector }), undefined, "command left out: the container's own (upstream)");
  t.equal(migratorSpecProblem({ selector: {} }), undefined, "an empty selector selects every pod");
  t.equal(migratorSpecProblem({ selector, command: ["migrate"], args: [], container: "web" }), undefined);
  t.equal(migratorSpecProblem({ selector, command: null, args: null }), undefined, "null is absent");
  t.equal(
    migratorSpecProblem({
      selector,
      activeDeadlineSeconds: 1,
      backoffLimit: 0,
      ttlSecondsAfterFinished: 0,
      probePullTimeoutSeconds: 1,
      resources: { limits: { memory: "1Gi" }, requests: { memory: "1Gi", cpu: 1 } },
    }),
    undefined,
    "the Job controls at their least values",
  );
  t.equal(migratorSpecProblem({ selector, activeDeadlineSeconds: null, resources: null }), undefined, "null is absent");
});

t.test("each problem names the field and the reason", async (t) => {
  const cases: [unknown, RegExp][] = [
    [undefined, /^spec: required/],
    [null, /^spec: required/],
    [[], /^spec: required/],
    [{}, /^spec\.selector: required$/],
    [{ selector: null }, /^spec\.selector: required$/],
    [{ selector, command: [] }, /^spec\.command: empty; the migration Job would run the image's entrypoint/],
    [{ selector, command: [""] }, /^spec\.command: the first word \(the executable\) is empty$/],
    [{ selector, command: "migrate" }, /^spec\.command: must be a list of strings$/],
    [{ selector, command: ["migrate", 1] }, /^spec\.command: must be a list of strings$/],
    [{ selector, args: [true] }, /^spec\.args: must be a list of strings$/],
    [{ selector, container: 3 }, /^spec\.container: must be a string$/],
    [
      { selector, activeDeadlineSeconds: 0 },
      /^spec\.activeDeadlineSeconds: must be a whole number of seconds from 1 to 2147483647 \(got 0\)$/,
    ],
    [
      { selector, activeDeadlineSeconds: "10m" },
      /^spec\.activeDeadlineSeconds: must be a whole number of seconds .*\(got "10m"\)$/,
    ],
    [{ selector, activeDeadlineSeconds: 1.5 }, /^spec\.activeDeadlineSeconds: .*\(got 1\.5\)$/],
    [{ selector, activeDeadlineSeconds: 2 ** 31 }, /^spec\.activeDeadlineSeconds: .*\(got 2147483648\)$/],
    [
      { selector, backoffLimit: -1 },
      /^spec\.backoffLimit: must be a whole number of retries from 0 to 2147483647 \(got -1\)$/,
    ],
    [
      { selector, ttlSecondsAfterFinished: -5 },
      /^spec\.ttlSecondsAfterFinished: must be a whole number of seconds from 0 /,
    ],
    [
      { selector, probePullTimeoutSeconds: 0 },
      /^spec\.probePullTimeoutSeconds: must be a whole number of seconds from 1 /,
    ],
    [{ selector, resources: "1Gi" }, /^spec\.resources: must be an object/],
    [
      { selector, resources: { limits: { memory: "lots" } } },
      /^spec\.resources\.limits\.memory: "lots" is not a quantity/,
    ],
    [
      { selector, resources: { limits: { cpu: "100m" }, requests: { cpu: 1 } } },
      /^spec\.resources\.requests\.cpu: 1 is more than spec\.resources\.limits\.cpu "100m"/,
    ],
  ];
  for (const [spec, want] of cases) t.match(migratorSpecProblem(spec), want, JSON.stringify(spec) ?? "undefined");
});
