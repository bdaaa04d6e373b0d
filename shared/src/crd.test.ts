// Static checks of reconciler/deploy/crd.yaml against the TypeScript Migrator types: the schema is
// structural, accepts every field the types (and upstream) define, and rejects what the API server
// would. A small validator for the OpenAPI subset CRDs use stands in for the API server here.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { parse } from "yaml";
import type { Condition, LabelSelector } from "./k8s.ts";
import type { MigrationRecord, Migrator, MigratorSpec, MigratorStatus } from "./migrator.ts";
import { API_VERSION, GROUP, KIND, MIGRATED_DIGESTS_LIMIT, PLURAL, VERSION } from "./migrator.ts";

const CRD_PATH = join(import.meta.dirname, "..", "..", "reconciler", "deploy", "crd.yaml");

interface Schema {
  type?: string;
  format?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  minimum?: number;
  maximum?: number;
  description?: string;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-map-type"?: string;
  "x-kubernetes-list-type"?: string;
  "x-kubernetes-list-map-keys"?: string[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const crd: any = parse(readFileSync(CRD_PATH, "utf8"));
const version = crd.spec.versions[0];
const root: Schema = version.schema.openAPIV3Schema;

/** Problems of `value` against `schema` (unknown fields count: the API server would prune them). */
function validate(schema: Schema, value: unknown, at = ""): string[] {
  const problems: string[] = [];
  const here = at === "" ? "<root>" : at;
  const type: string = schema["x-kubernetes-int-or-string"]
    ? Number.isInteger(value)
      ? "integer"
      : "string"
    : (schema.type ?? "(none)");
  switch (type) {
    case "object": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return [`${here}: want object`];
      const record = value as Record<string, unknown>;
      for (const key of schema.required ?? []) if (!(key in record)) problems.push(`${here}.${key}: required`);
      for (const [key, child] of Object.entries(record)) {
        const sub = schema.properties?.[key] ?? schema.additionalProperties;
        if (sub === undefined) {
          if (schema.properties !== undefined || schema.additionalProperties !== undefined) {
            problems.push(`${here}.${key}: unknown field (would be pruned)`);
          }
          continue;
        }
        problems.push(...validate(sub, child, `${at}.${key}`));
      }
      return problems;
    }
    case "array": {
      if (!Array.isArray(value)) return [`${here}: want array`];
      if (schema.maxItems !== undefined && value.length > schema.maxItems) {
        problems.push(`${here}: ${value.length} items, at most ${schema.maxItems}`);
      }
      if (schema["x-kubernetes-list-type"] === "map") {
        const keys = schema["x-kubernetes-list-map-keys"] ?? [];
        const seen = new Set(
          value.map((item) => JSON.stringify(keys.map((k) => (item as Record<string, unknown>)[k]))),
        );
        if (seen.size !== value.length) problems.push(`${here}: duplicate list-map keys ${keys.join(",")}`);
      }
      value.forEach((item, index) => problems.push(...validate(schema.items!, item, `${at}[${index}]`)));
      return problems;
    }
    case "string": {
      if (typeof value !== "string") return [`${here}: want string`];
      if (schema.enum !== undefined && !schema.enum.includes(value)) problems.push(`${here}: not one of the enum`);
      if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(value)) problems.push(`${here}: pattern`);
      if (schema.minLength !== undefined && value.length < schema.minLength) problems.push(`${here}: too short`);
      if (schema.maxLength !== undefined && value.length > schema.maxLength) problems.push(`${here}: too long`);
      if (schema.format === "date-time" && Number.isNaN(Date.parse(value))) problems.push(`${here}: not a date-time`);
      return problems;
    }
    case "integer":
      if (!Number.isInteger(value)) return [`${here}: want integer`];
      if (schema.minimum !== undefined && (value as number) < schema.minimum) problems.push(`${here}: below minimum`);
      if (schema.maximum !== undefined && (value as number) > schema.maximum) problems.push(`${here}: above maximum`);
      return problems;
    default:
      return [`${here}: schema without a type`];
  }
}

/** Structural schema rules the API server enforces (apiextensions: "structural schema"). */
function structuralProblems(schema: Schema, at: string): string[] {
  const problems: string[] = [];
  if (schema.type === undefined && !schema["x-kubernetes-int-or-string"]) problems.push(`${at}: no type`);
  if (schema.properties !== undefined && schema.additionalProperties !== undefined) {
    problems.push(`${at}: properties and additionalProperties together`);
  }
  if (schema.type === "array" && schema.items === undefined) problems.push(`${at}: array without items`);
  for (const [key, child] of Object.entries(schema.properties ?? {}))
    problems.push(...structuralProblems(child, `${at}.${key}`));
  if (schema.additionalProperties !== undefined)
    problems.push(...structuralProblems(schema.additionalProperties, `${at}.*`));
  if (schema.items !== undefined) problems.push(...structuralProblems(schema.items, `${at}[]`));
  return problems;
}

const DIGEST = `sha256:${"a".repeat(64)}`;
const NOW = "2024-05-01T12:00:00Z";

const fullSelector = {
  matchLabels: { app: "web" },
  matchExpressions: [{ key: "tier", operator: "In", values: ["front"] }],
} satisfies Required<LabelSelector>;

const fullSpec = {
  selector: fullSelector,
  templateSelector: { matchExpressions: [{ key: "canary", operator: "DoesNotExist" }] },
  command: ["python", "manage.py", "migrate"],
  args: ["--noinput"],
  image: "registry.example/tools:1",
  container: "app",
  labels: { "sidecar.istio.io/inject": "false" },
  annotations: { note: "x" },
  activeDeadlineSeconds: 600,
  backoffLimit: 2,
  ttlSecondsAfterFinished: 3600,
  resources: { limits: { cpu: 1, memory: "512Mi" }, requests: { cpu: "250m", memory: "256Mi" } },
  probePullTimeoutSeconds: 900,
} satisfies Required<MigratorSpec>;

function record(i: number): Required<MigrationRecord> {
  return {
    digest: `sha256:${i.toString(16).padStart(64, "0")}`,
    image: `app@${DIGEST}`,
    job: `web-${i}`,
    completionTime: NOW,
  };
}

const fullCondition = {
  type: "Ready",
  status: "True",
  reason: "Succeeded",
  message: "migrated",
  lastTransitionTime: NOW,
  observedGeneration: 3,
} satisfies Required<Condition>;

const fullStatus = {
  observedGeneration: 3,
  lastSuccessfulMigration: DIGEST,
  lastSuccessfulMigrationShort: DIGEST.slice(0, "sha256:".length + 12),
  currentDigest: DIGEST,
  currentImage: `registry.example/app:latest@${DIGEST}`,
  currentJob: "web-aaaaaaaaaa",
  migratedDigests: Array.from({ length: MIGRATED_DIGESTS_LIMIT }, (_, i) => record(i)),
  conditions: [fullCondition, { ...fullCondition, type: "MigrationsReady" }],
} satisfies Required<MigratorStatus>;

const fullMigrator: Migrator = {
  apiVersion: API_VERSION,
  kind: KIND,
  metadata: { name: "web", namespace: "apps" },
  spec: fullSpec,
  status: fullStatus,
};

/** The Migrator of the seed post. */
const seedMigrator = parse(`
apiVersion: migrations.coderanger.net/v1beta1
kind: Migrator
metadata:
  name: myapp-migrations
  namespace: apps
spec:
  selector:
    matchLabels:
      app: myapp
  command:
    - python
    - manage.py
    - migrate
status:
  lastSuccessfulMigration: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
`) as unknown;

t.test("the CRD's identity", async (t) => {
  t.equal(crd.apiVersion, "apiextensions.k8s.io/v1");
  t.equal(crd.kind, "CustomResourceDefinition");
  t.equal(crd.metadata.name, `${PLURAL}.${GROUP}`);
  t.equal(crd.spec.group, GROUP);
  t.same(crd.spec.names, { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: "migrator" });
  t.equal(crd.spec.names.categories, undefined, "not in `kubectl get all`");
  t.equal(crd.spec.scope, "Namespaced");
  t.equal(crd.spec.versions.length, 1);
  t.match(version, { name: VERSION, served: true, storage: true, subresources: { status: {} } });
});

t.test("printer columns", async (t) => {
  t.same(
    (version.additionalPrinterColumns as { name: string; type: string; jsonPath: string }[]).map((c) => [
      c.name,
      c.type,
      c.jsonPath,
    ]),
    [
      ["Digest", "string", ".status.lastSuccessfulMigrationShort"],
      ["Ready", "string", '.status.conditions[?(@.type=="Ready")].status'],
      ["Reason", "string", '.status.conditions[?(@.type=="Ready")].reason'],
      ["Age", "date", ".metadata.creationTimestamp"],
      ["Last Migration", "string", ".status.lastSuccessfulMigration"],
      ["Job", "string", ".status.currentJob"],
      ["Deadline", "integer", ".spec.activeDeadlineSeconds"],
    ],
  );
});

t.test("the schema is structural", async (t) => {
  t.same(structuralProblems(root, "openAPIV3Schema"), []);
  t.equal(root.properties?.metadata?.type, "object");
  t.equal(root.properties?.metadata?.properties, undefined, "metadata is left to the API server");
});

t.test("selectors are full, atomic LabelSelector schemas", async (t) => {
  for (const field of ["selector", "templateSelector"]) {
    const s = root.properties!.spec!.properties![field]!;
    t.equal(s["x-kubernetes-map-type"], "atomic", field);
    t.same(Object.keys(s.properties!).sort(), ["matchExpressions", "matchLabels"], field);
    t.same(s.properties!.matchLabels!.additionalProperties, { type: "string" }, field);
    const requirement = s.properties!.matchExpressions!.items!;
    t.same(requirement.required, ["key", "operator"], field);
    t.same(Object.keys(requirement.properties!).sort(), ["key", "operator", "values"], field);
  }
  t.same(root.properties!.spec!.required, ["selector"]);
});

t.test("conditions are a list map of metav1.Conditions; history is bounded", async (t) => {
  const status = root.properties!.status!.properties!;
  t.equal(status.conditions!["x-kubernetes-list-type"], "map");
  t.same(status.conditions!["x-kubernetes-list-map-keys"], ["type"]);
  t.same([...status.conditions!.items!.required!].sort(), [
    "lastTransitionTime",
    "message",
    "reason",
    "status",
    "type",
  ]);
  t.equal(status.migratedDigests!.maxItems, MIGRATED_DIGESTS_LIMIT);
});

t.test("the schema accepts every field of the types and the seed's Migrator", async (t) => {
  t.same(validate(root, fullMigrator), [], "a Migrator with every spec and status field");
  t.same(validate(root, seedMigrator), [], "the seed post's Migrator");
  t.same(
    validate(root, { apiVersion: API_VERSION, kind: KIND, metadata: {}, spec: { selector: {} } }),
    [],
    "empty selector",
  );
  t.same(
    validate(root, { apiVersion: API_VERSION, kind: KIND, metadata: {}, spec: { selector: {} }, status: {} }),
    [],
    "empty status",
  );
  // Upstream wrote image references, not digests, into lastSuccessfulMigration: such objects stay valid.
  t.same(validate(root, { ...fullMigrator, status: { lastSuccessfulMigration: "registry.example/app:latest" } }), []);
});

t.test("the schema rejects what the API server must", async (t) => {
  const cases: { name: string; object: unknown; problem: RegExp }[] = [
    {
      name: "no selector",
      object: { ...fullMigrator, spec: { command: ["x"] } },
      problem: /\.spec\.selector: required/,
    },
    {
      name: "too much history",
      object: { ...fullMigrator, status: { migratedDigests: Array.from({ length: 21 }, (_, i) => record(i)) } },
      problem: /migratedDigests: 21 items, at most 20/,
    },
    {
      name: "a bad condition status",
      object: { ...fullMigrator, status: { conditions: [{ ...fullCondition, status: "Yes" }] } },
      problem: /conditions\[0\]\.status: not one of the enum/,
    },
    {
      name: "two conditions of one type",
      object: { ...fullMigrator, status: { conditions: [fullCondition, fullCondition] } },
      problem: /duplicate list-map keys type/,
    },
    {
      name: "a condition without reason",
      object: { ...fullMigrator, status: { conditions: [{ ...fullCondition, reason: "" }] } },
      problem: /reason: pattern/,
    },
    {
      name: "a command that is a string",
      object: { ...fullMigrator, spec: { ...fullSpec, command: "migrate" } },
      problem: /\.spec\.command: want array/,
    },
    {
      name: "a requirement without operator",
      object: { ...fullMigrator, spec: { selector: { matchExpressions: [{ key: "a" }] } } },
      problem: /matchExpressions\[0\]\.operator: required/,
    },
    {
      name: "a deadline of zero",
      object: { ...fullMigrator, spec: { ...fullSpec, activeDeadlineSeconds: 0 } },
      problem: /\.spec\.activeDeadlineSeconds: below minimum/,
    },
    {
      name: "a deadline as a duration string",
      object: { ...fullMigrator, spec: { ...fullSpec, activeDeadlineSeconds: "10m" } },
      problem: /\.spec\.activeDeadlineSeconds: want integer/,
    },
    {
      name: "a negative backoffLimit",
      object: { ...fullMigrator, spec: { ...fullSpec, backoffLimit: -1 } },
      problem: /\.spec\.backoffLimit: below minimum/,
    },
    {
      name: "a quantity that is not one",
      object: { ...fullMigrator, spec: { ...fullSpec, resources: { limits: { memory: "lots" } } } },
      problem: /\.spec\.resources\.limits\.memory: pattern/,
    },
    {
      name: "resources beside limits and requests",
      object: { ...fullMigrator, spec: { ...fullSpec, resources: { claims: [] } } },
      problem: /\.spec\.resources\.claims: unknown field/,
    },
    {
      name: "a misspelt spec field",
      object: { ...fullMigrator, spec: { ...fullSpec, containers: "x" } },
      problem: /\.spec\.containers: unknown field/,
    },
  ];
  for (const c of cases) t.match(validate(root, c.object).join("\n"), c.problem, c.name);
});
