import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { QUANTITY_PATTERN, parseQuantity, resourcesProblem } from "./quantity.ts";

t.test("parseQuantity reads the quantity grammar", async (t) => {
  const cases: [unknown, number | undefined][] = [
    ["1", 1],
    [2, 2],
    ["500m", 0.5],
    ["1.5", 1.5],
    [".5", 0.5],
    ["256Mi", 256 * 2 ** 20],
    ["1Gi", 2 ** 30],
    ["1G", 1e9],
    ["2k", 2000],
    ["1e3", 1000],
    ["1E-3", 0.001],
    ["+1", 1],
    ["-1", -1],
    ["", undefined],
    ["lots", undefined],
    ["1 Gi", undefined],
    ["1GB", undefined],
    ["1Ki1", undefined],
    [Number.NaN, undefined],
    [null, undefined],
    [true, undefined],
  ];
  for (const [value, want] of cases) t.equal(parseQuantity(value), want, JSON.stringify(value));
});

t.test("the CRD checks quantities with the same pattern", async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const crd: any = parse(readFileSync(join(import.meta.dirname, "../../reconciler/deploy/crd.yaml"), "utf8"));
  const resources = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.resources;
  for (const kind of ["limits", "requests"]) {
    t.equal(resources.properties[kind].additionalProperties.pattern, QUANTITY_PATTERN.source, kind);
  }
});

t.test("resourcesProblem names the field and the reason", async (t) => {
  t.equal(resourcesProblem({}, "spec.resources"), undefined, "empty: nothing asked");
  t.equal(
    resourcesProblem(
      { limits: { cpu: 1, memory: "512Mi" }, requests: { cpu: "250m", memory: "512Mi" } },
      "spec.resources",
    ),
    undefined,
    "requests up to the limits",
  );
  t.equal(resourcesProblem({ requests: { "example.com/gpu": 1, "hugepages-2Mi": "4Mi" } }, "r"), undefined);
  const cases: [unknown, RegExp][] = [
    [[], /^spec\.resources: must be an object with limits and\/or requests$/],
    ["1Gi", /^spec\.resources: must be an object/],
    [{ claims: [] }, /^spec\.resources\.claims: unknown field \(only limits and requests\)$/],
    [{ limits: ["1"] }, /^spec\.resources\.limits: must be a map of resource name to quantity$/],
    [{ limits: { "bad name!": "1" } }, /^spec\.resources\.limits\.bad name!: not a resource name$/],
    [
      { limits: { memory: "lots" } },
      /^spec\.resources\.limits\.memory: "lots" is not a quantity \(e\.g\. 500m, 1, 256Mi\)$/,
    ],
    [{ requests: { cpu: "-1" } }, /^spec\.resources\.requests\.cpu: must not be negative \(got "-1"\)$/],
    [
      { limits: { memory: "256Mi" }, requests: { memory: "1Gi" } },
      /^spec\.resources\.requests\.memory: "1Gi" is more than spec\.resources\.limits\.memory "256Mi"; the API server would refuse the migration pod$/,
    ],
  ];
  for (const [value, want] of cases) t.match(resourcesProblem(value, "spec.resources"), want, JSON.stringify(value));
});
