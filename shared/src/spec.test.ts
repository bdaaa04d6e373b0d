import t from "tap";
import { migratorSpecProblem } from "./spec.ts";

const selector = { matchLabels: { app: "web" } };

t.test("a usable spec has no problem", async (t) => {
  t.equal(migratorSpecProblem({ selector }), undefined, "command left out: the container's own (upstream)");
  t.equal(migratorSpecProblem({ selector: {} }), undefined, "an empty selector selects every pod");
  t.equal(migratorSpecProblem({ selector, command: ["migrate"], args: [], container: "web" }), undefined);
  t.equal(migratorSpecProblem({ selector, command: null, args: null }), undefined, "null is absent");
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
  ];
  for (const [spec, want] of cases) t.match(migratorSpecProblem(spec), want, JSON.stringify(spec) ?? "undefined");
});
