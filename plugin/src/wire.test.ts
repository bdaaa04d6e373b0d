import fc from "fast-check";
import t from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import type { Manifest } from "./manifests.ts";
import { SYNC_WAVE, syncWave, wire } from "./wire.ts";
import type { WireOptions } from "./wire.ts";

const options: WireOptions = {
  defaultNamespace: "apps",
  waiter: { image: "waiter:1", apiUrl: "http://reconciler:8443" },
  allowUnmatchedMigrators: false,
};

function m(object: KubeObject, line = 1): Manifest {
  return { object, origin: { file: "test.yaml", line } };
}

function deployment(
  name: string,
  labels: Record<string, string>,
  extra: Partial<KubeObject["metadata"]> = {},
): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, ...extra },
    spec: {
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: "app", image: "app:latest" }] } },
    },
  };
}

function migrator(
  name: string,
  selector: unknown,
  extra: Record<string, unknown> = {},
  meta: Partial<KubeObject["metadata"]> = {},
): KubeObject {
  return {
    apiVersion: "migrations.coderanger.net/v1beta1",
    kind: "Migrator",
    metadata: { name, ...meta },
    spec: { selector, ...extra },
  };
}

const inits = (o: KubeObject): string[] =>
  (
    (o["spec"] as { template: { spec: { initContainers?: { name: string }[] } } }).template.spec.initContainers ?? []
  ).map((c) => c.name);

t.test("waiters go first, sorted by name, replacing their own earlier copies", async (t) => {
  const d = deployment("web", { app: "web" });
  (d["spec"] as { template: { spec: { initContainers: unknown[] } } }).template.spec.initContainers = [
    { name: "setup", image: "busybox" },
    { name: "migrate-wait-b", image: "old" },
  ];
  const manifests = [
    m(d),
    m(migrator("b", { matchLabels: { app: "web" } })),
    m(migrator("a", { matchLabels: { app: "web" } })),
  ];
  const report = wire(manifests, options);
  t.same(inits(d), ["migrate-wait-a", "migrate-wait-b", "setup"]);
  t.equal(report.migrators.length, 2);
  const before = JSON.stringify(manifests.map((x) => x.object));
  wire(manifests, options);
  t.equal(JSON.stringify(manifests.map((x) => x.object)), before, "wiring twice changes nothing");
});

t.test("a Pod selected by two Migrators gets both waiters once, in order", async (t) => {
  const pod: KubeObject = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", labels: { app: "x" } },
    spec: { containers: [{ name: "c" }] },
  };
  wire([m(pod), m(migrator("z", { matchLabels: { app: "x" } })), m(migrator("y", {}))], options);
  t.same(
    (pod["spec"] as { initContainers: { name: string }[] }).initContainers.map((c) => c.name),
    ["migrate-wait-y", "migrate-wait-z"],
  );
});

t.test("namespaces: objects without one take the default, for comparison only", async (t) => {
  const here = deployment("a", { app: "a" });
  const explicit = deployment("b", { app: "a" }, { namespace: "apps" });
  const elsewhere = deployment("c", { app: "a" }, { namespace: "other" });
  const mig = migrator("a", { matchLabels: { app: "a" } });
  const report = wire([m(here), m(explicit), m(elsewhere), m(mig)], options);
  t.same(
    report.migrators[0]!.injected.map((i) => i.workload.object.metadata.name),
    ["a", "b"],
  );
  t.same(
    report.ungated.map((u) => u.object.metadata.name),
    ["c"],
  );
  t.equal(mig.metadata.namespace, undefined, "no namespace field is added");
});

t.test("sync waves", async (t) => {
  const cases: [string | undefined, string[], string][] = [
    [undefined, [], "-1"],
    [undefined, ["3", "5"], "2"],
    ["-10", ["3"], "-10"],
    ["3", ["3"], "2"],
    ["7", [], "-1"],
    ["nonsense", ["1"], "0"],
  ];
  for (const [own, workloadWaves, expected] of cases) {
    const workloads = (workloadWaves.length === 0 ? [undefined] : workloadWaves).map((w, i) =>
      deployment(`w${i}`, { app: "x" }, w === undefined ? {} : { annotations: { [SYNC_WAVE]: w } }),
    );
    const mig = migrator(
      "x",
      { matchLabels: { app: "x" } },
      {},
      own === undefined ? {} : { annotations: { [SYNC_WAVE]: own } },
    );
    wire([...workloads.map((w) => m(w)), m(mig)], options);
    t.equal(mig.metadata.annotations?.[SYNC_WAVE], expected, `own ${own} workloads ${workloadWaves.join(",")}`);
    t.ok(workloads.every((w) => syncWave(w) > syncWave(mig)));
  }
});

t.test("opt-out on the workload or the pod template", async (t) => {
  const a = deployment("a", { app: "x" }, { annotations: { "migrations.coderanger.net/no-wait": "true" } });
  const b = deployment("b", { app: "x" });
  (b["spec"] as { template: { metadata: { annotations?: Record<string, string> } } }).template.metadata.annotations = {
    "migrations.coderanger.net/no-wait": "true",
  };
  const report = wire([m(a), m(b), m(migrator("x", { matchLabels: { app: "x" } }))], options);
  t.same(inits(a), []);
  t.same(inits(b), []);
  t.equal(report.migrators[0]!.optedOut.length, 2);
});

t.test("an Argo Rollout with workloadRef gates the referenced Deployment's template", async (t) => {
  const template = deployment("tpl", { app: "r" });
  const rollout: KubeObject = {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Rollout",
    metadata: { name: "r", namespace: "apps" },
    spec: { workloadRef: { apiVersion: "apps/v1", kind: "Deployment", name: "tpl" } },
  };
  const report = wire([m(rollout), m(template), m(migrator("r", { matchLabels: { app: "r" } }))], options);
  t.same(inits(template), ["migrate-wait-r"]);
  t.same(report.migrators[0]!.injected.map((i) => i.workload.object.kind).sort(), ["Deployment", "Rollout"]);
});

t.test("generated Migrators are regenerated in place on re-rendering", async (t) => {
  const d = deployment("web", { app: "web" }, { annotations: { "migrations.coderanger.net/command": '["migrate"]' } });
  const manifests = [m(d)];
  wire(manifests, options);
  t.equal(manifests.length, 2);
  const generated = manifests[1]!.object;
  t.same(generated["spec"], { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  const once = JSON.stringify(manifests.map((x) => x.object));
  const copy = JSON.parse(once) as KubeObject[];
  const again = copy.map((o) => m(o));
  wire(again, options);
  t.equal(JSON.stringify(again.map((x) => x.object)), once);
});

t.test("wiring is idempotent for any set of Migrators and workloads", async (t) => {
  const labels = fc.constantFrom("a", "b", "c");
  const arb = fc.record({
    workloads: fc.uniqueArray(
      fc.record({ name: fc.constantFrom("w1", "w2", "w3", "w4"), app: labels, wave: fc.integer({ min: -3, max: 3 }) }),
      {
        selector: (w) => w.name,
      },
    ),
    migrators: fc.uniqueArray(fc.record({ name: fc.constantFrom("m1", "m2", "m3"), app: labels }), {
      selector: (x) => x.name,
    }),
  });
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(arb, ({ workloads, migrators }) => {
        const objects = [
          ...workloads.map((w) => deployment(w.name, { app: w.app }, { annotations: { [SYNC_WAVE]: String(w.wave) } })),
          ...migrators.map((x) => migrator(x.name, { matchLabels: { app: x.app } })),
        ];
        const opts = { ...options, allowUnmatchedMigrators: true };
        wire(
          objects.map((o) => m(o)),
          opts,
        );
        const once = JSON.stringify(objects);
        wire(
          objects.map((o) => m(o)),
          opts,
        );
        return JSON.stringify(objects) === once;
      }),
    ),
  );
});

t.test("every workload kind with a pod template is gated where its template lives", async (t) => {
  const labels = { app: "web" };
  const template = { metadata: { labels }, spec: { containers: [{ name: "app", image: "app:latest" }] } };
  const kinds: [string, string, KubeObject["spec"], (o: KubeObject) => string[]][] = [
    ["apps/v1", "ReplicaSet", { selector: { matchLabels: labels }, template }, inits],
    ["apps/v1", "StatefulSet", { selector: { matchLabels: labels }, serviceName: "web", template }, inits],
    ["apps/v1", "DaemonSet", { selector: { matchLabels: labels }, template }, inits],
    ["batch/v1", "Job", { template }, inits],
    [
      "batch/v1",
      "CronJob",
      { schedule: "@hourly", jobTemplate: { spec: { template } } },
      (o) =>
        (
          (o["spec"] as { jobTemplate: { spec: { template: { spec: { initContainers?: { name: string }[] } } } } })
            .jobTemplate.spec.template.spec.initContainers ?? []
        ).map((c) => c.name),
    ],
  ];
  for (const [apiVersion, kind, spec, waiters] of kinds) {
    const workload: KubeObject = { apiVersion, kind, metadata: { name: "web" }, spec: structuredClone(spec) };
    const report = wire([m(workload), m(migrator("db", { matchLabels: labels }))], options);
    t.same(waiters(workload), ["migrate-wait-db"], `${kind}: the waiter is in its pod template`);
    t.equal(report.migrators[0]?.injected[0]?.container, "app", `${kind}: gating its first container`);
  }
});

t.test("spec.container picks the gated container; a missing one names the workload and its file", async (t) => {
  const d = deployment("web", { app: "web" });
  const spec = (d["spec"] as { template: { spec: { containers: { name: string }[] } } }).template.spec;
  spec.containers.push({ name: "sidecar" });
  const report = wire([m(d), m(migrator("db", { matchLabels: { app: "web" } }, { container: "sidecar" }))], options);
  t.equal(report.migrators[0]?.injected[0]?.container, "sidecar");
  t.throws(() => wire([m(d, 3), m(migrator("db", { matchLabels: { app: "web" } }, { container: "db" }))], options), {
    message:
      'Migrator apps/db (test.yaml:1): Deployment apps/web (test.yaml:3): container "db" (spec.container) is not in the pod template (containers: "app", "sidecar")',
  });
  t.throws(() => wire([m(d), m(migrator("db", { matchLabels: { app: "web" } }, { command: [] }))], options), {
    message: /^Migrator apps\/db \(test\.yaml:1\): spec\.command: empty;/,
  });
});

t.test("waiter-token: each waiter reads the pod's projected token, one volume per pod template", async (t) => {
  const d = deployment("web", { app: "web" });
  const spec = (d["spec"] as { template: { spec: Record<string, unknown> } }).template.spec;
  spec["volumes"] = [{ name: "config", configMap: { name: "web" } }];
  const manifests = [
    m(d),
    m(migrator("a", { matchLabels: { app: "web" } })),
    m(migrator("b", { matchLabels: { app: "web" } })),
  ];
  wire(manifests, { ...options, waiter: { ...options.waiter, token: true } });
  const waiters = spec["initContainers"] as { name: string; args: string[]; volumeMounts: unknown[] }[];
  for (const waiter of waiters) {
    t.same(waiter.args.slice(-2), ["--token-file", "/var/run/secrets/digest-migrations/token"], waiter.name);
    t.same(waiter.volumeMounts, [
      { name: "migrate-wait-token", mountPath: "/var/run/secrets/digest-migrations", readOnly: true },
    ]);
  }
  const volumes = () => spec["volumes"];
  t.same(volumes(), [
    { name: "config", configMap: { name: "web" } },
    {
      name: "migrate-wait-token",
      projected: {
        sources: [{ serviceAccountToken: { audience: "digest-migrations", expirationSeconds: 600, path: "token" } }],
      },
    },
  ]);
  const once = JSON.stringify(d);
  wire(manifests, { ...options, waiter: { ...options.waiter, token: true } });
  t.equal(JSON.stringify(d), once, "rendering its own output changes nothing");

  const plain = deployment("web", { app: "web" });
  wire([m(plain), m(migrator("a", { matchLabels: { app: "web" } }))], options);
  const plainSpec = (plain["spec"] as { template: { spec: Record<string, unknown> } }).template.spec;
  t.notOk("volumes" in plainSpec, "without waiter-token: no volume, as before");
  t.notOk(JSON.stringify(plainSpec).includes("token"), "and no token flag");
});
