import t from "tap";
import fc from "fast-check";
import type { LabelSelector, LabelSelectorRequirement, Labels } from "./k8s.ts";
import {
  SelectorError,
  compileSelector,
  labelKeyProblem,
  labelValueProblem,
  selectorMatches,
  validateSelector,
} from "./selector.ts";

t.test("matching follows Kubernetes semantics", async (t) => {
  const cases: { name: string; selector: LabelSelector | undefined; labels: Labels | undefined; want: boolean }[] = [
    { name: "undefined selector matches everything", selector: undefined, labels: { a: "1" }, want: true },
    { name: "empty selector matches everything", selector: {}, labels: {}, want: true },
    { name: "empty selector matches undefined labels", selector: {}, labels: undefined, want: true },
    {
      name: "matchLabels equal",
      selector: { matchLabels: { app: "web" } },
      labels: { app: "web", x: "y" },
      want: true,
    },
    {
      name: "matchLabels different value",
      selector: { matchLabels: { app: "web" } },
      labels: { app: "db" },
      want: false,
    },
    { name: "matchLabels missing key", selector: { matchLabels: { app: "web" } }, labels: {}, want: false },
    { name: "matchLabels empty value needs key", selector: { matchLabels: { app: "" } }, labels: {}, want: false },
    {
      name: "matchLabels empty value present",
      selector: { matchLabels: { app: "" } },
      labels: { app: "" },
      want: true,
    },
    {
      name: "matchLabels are ANDed",
      selector: { matchLabels: { app: "web", tier: "front" } },
      labels: { app: "web", tier: "back" },
      want: false,
    },
    { name: "In present", selector: expr("env", "In", ["a", "b"]), labels: { env: "b" }, want: true },
    { name: "In other value", selector: expr("env", "In", ["a", "b"]), labels: { env: "c" }, want: false },
    { name: "In absent key", selector: expr("env", "In", ["a"]), labels: {}, want: false },
    { name: "NotIn other value", selector: expr("env", "NotIn", ["a"]), labels: { env: "b" }, want: true },
    { name: "NotIn listed value", selector: expr("env", "NotIn", ["a"]), labels: { env: "a" }, want: false },
    { name: "NotIn absent key matches", selector: expr("env", "NotIn", ["a"]), labels: {}, want: true },
    { name: "NotIn undefined labels matches", selector: expr("env", "NotIn", ["a"]), labels: undefined, want: true },
    { name: "Exists present", selector: expr("env", "Exists"), labels: { env: "" }, want: true },
    { name: "Exists absent", selector: expr("env", "Exists"), labels: {}, want: false },
    { name: "DoesNotExist absent", selector: expr("env", "DoesNotExist"), labels: { other: "x" }, want: true },
    { name: "DoesNotExist present", selector: expr("env", "DoesNotExist"), labels: { env: "x" }, want: false },
    {
      name: "matchLabels and matchExpressions are ANDed",
      selector: { matchLabels: { app: "web" }, matchExpressions: [{ key: "canary", operator: "DoesNotExist" }] },
      labels: { app: "web", canary: "true" },
      want: false,
    },
    {
      name: "prefixed keys",
      selector: { matchLabels: { "app.kubernetes.io/name": "web" } },
      labels: { "app.kubernetes.io/name": "web" },
      want: true,
    },
    { name: "inherited properties are not labels", selector: expr("toString", "Exists"), labels: {}, want: false },
  ];
  for (const c of cases) {
    t.equal(selectorMatches(c.selector, c.labels), c.want, c.name);
    t.equal(compileSelector(c.selector, "test")(c.labels), c.want, `${c.name} (compiled)`);
  }
});

t.test("malformed selectors are rejected naming where and why", async (t) => {
  const where = "Migrator apps/web spec.selector";
  const cases: { name: string; selector: unknown; message: RegExp }[] = [
    {
      name: "not an object",
      selector: "app=web",
      message: /spec\.selector: a label selector must be an object, got string/,
    },
    { name: "a list", selector: [], message: /spec\.selector: .*got a list/ },
    {
      name: "misspelt field",
      selector: { matchLabel: { a: "b" } },
      message: /spec\.selector: unknown field "matchLabel"/,
    },
    {
      name: "matchLabels a list",
      selector: { matchLabels: ["a"] },
      message: /spec\.selector\.matchLabels: must be a map/,
    },
    {
      name: "numeric label value",
      selector: { matchLabels: { version: 1 } },
      message: /matchLabels\["version"\]: a label value must be a string, got number 1/,
    },
    {
      name: "bad label value",
      selector: { matchLabels: { app: "-web" } },
      message: /matchLabels\["app"\]: invalid label value "-web": must be empty or consist/,
    },
    {
      name: "label value too long",
      selector: { matchLabels: { app: "a".repeat(64) } },
      message: /no more than 63 characters/,
    },
    {
      name: "bad key",
      selector: { matchLabels: { "a b": "c" } },
      message: /matchLabels\["a b"\]: invalid label key: name part/,
    },
    {
      name: "uppercase prefix",
      selector: { matchLabels: { "Example.com/a": "c" } },
      message: /invalid label key: prefix part must be a lowercase DNS subdomain/,
    },
    { name: "empty prefix", selector: { matchLabels: { "/a": "c" } }, message: /prefix part must be non-empty/ },
    { name: "two slashes", selector: { matchLabels: { "a/b/c": "d" } }, message: /separated by one '\/'/ },
    { name: "empty key", selector: { matchLabels: { "": "d" } }, message: /name part must be non-empty/ },
    {
      name: "matchExpressions not a list",
      selector: { matchExpressions: { key: "a" } },
      message: /spec\.selector\.matchExpressions: must be a list/,
    },
    {
      name: "requirement not an object",
      selector: { matchExpressions: ["a"] },
      message: /matchExpressions\[0\]: a requirement must be an object/,
    },
    {
      name: "unknown operator",
      selector: { matchExpressions: [{ key: "a", operator: "in", values: ["x"] }] },
      message: /matchExpressions\[0\]\.operator: unsupported operator "in" \(one of In, NotIn, Exists, DoesNotExist\)/,
    },
    {
      name: "missing operator",
      selector: { matchExpressions: [{ key: "a" }] },
      message: /matchExpressions\[0\]\.operator: required/,
    },
    {
      name: "missing key",
      selector: { matchExpressions: [{ operator: "Exists" }] },
      message: /matchExpressions\[0\]\.key: required/,
    },
    {
      name: "In without values",
      selector: { matchExpressions: [{ key: "a", operator: "In" }] },
      message: /matchExpressions\[0\]\.values: must be non-empty when operator is In/,
    },
    {
      name: "NotIn with empty values",
      selector: { matchExpressions: [{ key: "a", operator: "NotIn", values: [] }] },
      message: /values: must be non-empty when operator is NotIn/,
    },
    {
      name: "Exists with values",
      selector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] },
      message: /values: must be empty when operator is Exists/,
    },
    {
      name: "DoesNotExist with values",
      selector: { matchExpressions: [{ key: "a", operator: "DoesNotExist", values: ["x"] }] },
      message: /values: must be empty when operator is DoesNotExist/,
    },
    {
      name: "values not a list",
      selector: { matchExpressions: [{ key: "a", operator: "In", values: "x" }] },
      message: /matchExpressions\[0\]\.values: must be a list of strings/,
    },
    {
      name: "bad value in values",
      selector: { matchExpressions: [{ key: "a", operator: "In", values: ["ok", "not ok"] }] },
      message: /matchExpressions\[0\]\.values\[1\]: invalid label value "not ok"/,
    },
    {
      name: "non-string value in values",
      selector: { matchExpressions: [{ key: "a", operator: "In", values: [true] }] },
      message: /values\[0\]: must be a string, got boolean true/,
    },
    {
      name: "unknown requirement field",
      selector: { matchExpressions: [{ key: "a", operator: "Exists", value: "x" }] },
      message: /matchExpressions\[0\]: unknown field "value"/,
    },
  ];
  for (const c of cases) {
    t.throws(() => validateSelector(c.selector, where), { name: "SelectorError", message: c.message }, c.name);
    t.throws(() => compileSelector(c.selector as LabelSelector, where), SelectorError, `${c.name} (compile)`);
  }
});

t.test("validateSelector returns the selector, missing as empty", async (t) => {
  t.same(validateSelector(undefined, "x"), {});
  t.same(validateSelector(null, "x"), {});
  t.same(validateSelector({ matchExpressions: [{ key: "a", operator: "Exists", values: [] }] }, "x"), {
    matchExpressions: [{ key: "a", operator: "Exists" }],
  });
  t.same(validateSelector({ matchLabels: { a: "b" }, matchExpressions: null }, "x"), { matchLabels: { a: "b" } });
});

t.test("label keys and values at their limits", async (t) => {
  const name63 = "a".repeat(63);
  const prefix253 = Array.from({ length: 4 }, () => "b".repeat(62)).join(".") + ".c"; // 4*62 + 3 + 2 = 253
  t.equal(prefix253.length, 253);
  t.equal(labelKeyProblem(`${prefix253}/${name63}`), undefined, "prefix 253 and name 63 accepted");
  t.match(labelKeyProblem(`${prefix253}c/a`), /no more than 253/, "prefix 254 rejected");
  t.match(labelKeyProblem(`${name63}a`), /no more than 63/, "name 64 rejected");
  t.equal(labelKeyProblem("A_b.C-9"), undefined, "mixed case name accepted");
  t.match(labelKeyProblem("a_"), /start and end with an alphanumeric/);
  t.equal(labelValueProblem(""), undefined, "empty value accepted");
  t.equal(labelValueProblem(name63), undefined, "value of 63 accepted");
  t.match(labelValueProblem("a.b_"), /must be empty or/);
});

// A tiny reference model: every selector is a conjunction of (key, allowed-values-or-presence) terms,
// evaluated naively over an explicit universe of label sets.
const keys = ["app", "tier", "example.com/env"];
const vals = ["a", "b", ""];
const labelsArb: fc.Arbitrary<Labels> = fc.dictionary(fc.constantFrom(...keys), fc.constantFrom(...vals), {
  maxKeys: 3,
});
const requirementArb: fc.Arbitrary<LabelSelectorRequirement> = fc.oneof(
  fc.record({
    key: fc.constantFrom(...keys),
    operator: fc.constantFrom("In", "NotIn"),
    values: fc.uniqueArray(fc.constantFrom(...vals), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({ key: fc.constantFrom(...keys), operator: fc.constantFrom("Exists", "DoesNotExist") }),
);
const selectorArb: fc.Arbitrary<LabelSelector> = fc.record(
  {
    matchLabels: fc.dictionary(fc.constantFrom(...keys), fc.constantFrom(...vals), { maxKeys: 2 }),
    matchExpressions: fc.array(requirementArb, { maxLength: 3 }),
  },
  { requiredKeys: [] },
);

function model(selector: LabelSelector, labels: Labels): boolean {
  const terms: [string, (present: boolean, value: string | undefined) => boolean][] = [];
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) terms.push([k, (p, x) => p && x === v]);
  for (const r of selector.matchExpressions ?? []) {
    const vs = r.values ?? [];
    if (r.operator === "In") terms.push([r.key, (p, x) => p && vs.includes(x as string)]);
    if (r.operator === "NotIn") terms.push([r.key, (p, x) => !(p && vs.includes(x as string))]);
    if (r.operator === "Exists") terms.push([r.key, (p) => p]);
    if (r.operator === "DoesNotExist") terms.push([r.key, (p) => !p]);
  }
  return terms.every(([k, f]) => f(k in labels, labels[k]));
}

t.test("property: matching agrees with the reference model", async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        selectorArb,
        labelsArb,
        (selector, labels) => selectorMatches(selector, labels) === model(selector, labels),
      ),
      { numRuns: 2000 },
    ),
  );
});

t.test("property: NotIn is the negation of In, DoesNotExist of Exists", async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(requirementArb, labelsArb, (r, labels) => {
        const flipped = { In: "NotIn", NotIn: "In", Exists: "DoesNotExist", DoesNotExist: "Exists" }[r.operator] ?? "";
        const a = selectorMatches({ matchExpressions: [r] }, labels);
        const b = selectorMatches({ matchExpressions: [{ ...r, operator: flipped }] }, labels);
        return a !== b;
      }),
    ),
  );
});

t.test("property: adding a requirement only narrows the selection", async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(selectorArb, requirementArb, labelsArb, (selector, extra, labels) => {
        const narrowed = { ...selector, matchExpressions: [...(selector.matchExpressions ?? []), extra] };
        return !selectorMatches(narrowed, labels) || selectorMatches(selector, labels);
      }),
    ),
  );
});

function expr(key: string, operator: string, values?: string[]): LabelSelector {
  return { matchExpressions: [values === undefined ? { key, operator } : { key, operator, values }] };
}
