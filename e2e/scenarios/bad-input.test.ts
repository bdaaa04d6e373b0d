// Bad input end to end, by family, on the real control plane with the reconciler under its shipped RBAC:
// each case gets a clear error or condition naming the object and the reason, nothing crashes, and
// nothing is half-written (the plugin prints nothing on stdout; the reconciler creates no Job and records
// no digest for a Migrator it cannot serve). plugin/test/cli.test.ts holds the plugin's other hostile
// inputs (alias bombs, symlinks, huge files, exec plugins, …); reconciler/src/waiter-api.test.ts the
// waiter API's limits against a scripted oracle — here the waiter API answers from the live reconciler.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { WAITER_API_PATH } from "@digest-migrations/shared";
import type { MigratorSpec } from "@digest-migrations/shared";
import { deployment, pod } from "../harness/objects.ts";
import { waitFor } from "../kit/wait.ts";
import { GenerateError, generate } from "../pipeline/sync.ts";
import { APP_IMAGE, appContainer, appImage, reconcilerEnv, reportRunning } from "../reconciler/setup.ts";
import { table } from "./report.ts";

interface Tally {
  cases: number;
  clear: number;
  crashes: number;
  partial: number;
}
const figures = new Map<string, Tally>();
function count(family: string, clear: boolean, crashed: boolean, partial: boolean): void {
  const tally = figures.get(family) ?? { cases: 0, clear: 0, crashes: 0, partial: 0 };
  tally.cases++;
  if (clear) tally.clear++;
  if (crashed) tally.crashes++;
  if (partial) tally.partial++;
  figures.set(family, tally);
}

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: app
          image: registry.example/app:latest
`;
const MIGRATOR = `apiVersion: migrations.coderanger.net/v1beta1
kind: Migrator
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: web
  command: [migrate]
`;

const pluginCases: {
  name: string;
  files: Record<string, string>;
  parameters?: Record<string, string>;
  error: RegExp;
}[] = [
  {
    name: "infinity in a manifest",
    files: { "a.yaml": DEPLOYMENT + "  replicas: .inf\n" },
    error: /a\.yaml:\d+: \.inf cannot be represented in JSON/,
  },
  {
    name: "an unknown YAML tag",
    files: { "a.yaml": DEPLOYMENT.replace("name: web\nspec", "name: !Ref web\nspec") },
    error: /a\.yaml:\d+: unknown scalar tag/,
  },
  {
    name: "a duplicated key",
    files: { "a.yaml": DEPLOYMENT.replace("  name: web\n", "  name: web\n  name: web2\n") },
    error: /a\.yaml:\d+: duplicated mapping key/,
  },
  {
    name: "a tab in indentation",
    files: { "a.yaml": DEPLOYMENT.replace("  selector:", "\tselector:") },
    error: /a\.yaml:\d+: /,
  },
  {
    name: "a Migrator selecting nothing",
    files: { "a.yaml": DEPLOYMENT, "m.yaml": MIGRATOR.replace("app: web\n  command", "app: nobody\n  command") },
    error: /Migrator [^ ]+\/web \(m\.yaml:1\): selects no workload/,
  },
  {
    name: "a Migrator naming a missing container",
    files: { "a.yaml": DEPLOYMENT, "m.yaml": MIGRATOR + "  container: db\n" },
    error: /Deployment [^ ]+\/web \(a\.yaml:1\): container "db" \(spec\.container\) is not in the pod template/,
  },
  {
    name: "a Migrator with an empty command",
    files: { "a.yaml": DEPLOYMENT, "m.yaml": MIGRATOR.replace("command: [migrate]", "command: []") },
    error: /Migrator [^ ]+\/web \(m\.yaml:1\): spec\.command: empty/,
  },
  {
    name: "a non-boolean parameter",
    files: { "a.yaml": DEPLOYMENT, "m.yaml": MIGRATOR },
    parameters: { recurse: "sometimes" },
    error: /parameter recurse: "sometimes" is not true or false/,
  },
  {
    name: "a Helm chart whose template fails",
    files: {
      "Chart.yaml": "apiVersion: v2\nname: x\nversion: 0.1.0\n",
      "templates/a.yaml": '{{ fail "no database configured" }}\n',
    },
    error: /helm template .* failed: .*no database configured/,
  },
  {
    name: "a kustomization with a missing resource",
    files: { "kustomization.yaml": "resources:\n  - missing.yaml\n" },
    error: /kubectl kustomize .* failed: .*missing\.yaml/,
  },
  {
    name: "a JSON file holding a list",
    files: { "a.json": '[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]' },
    error: /a\.json:1: a JSON file must hold one object, not a list/,
  },
];

t.test("plugin input through generate, as Argo CD calls it (the repo-server and sidecar stand-ins)", async (t) => {
  for (const c of pluginCases) {
    const dir = mkdtempSync(path.join(tmpdir(), "dm-bad-"));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    for (const [file, text] of Object.entries(c.files)) {
      mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      writeFileSync(path.join(dir, file), text);
    }
    let output: unknown[] | undefined;
    let error: unknown;
    try {
      output = await generate(dir, {
        namespace: "apps",
        appName: "bad-input",
        waiterImage: "registry.example/waiter:1",
        reconcilerUrl: "http://reconciler:8443",
        ...(c.parameters ? { parameters: c.parameters } : {}),
      });
    } catch (e) {
      error = e;
    }
    const message = error instanceof GenerateError ? error.message : "";
    const clear = c.error.test(message) && !/\n/.test(message.replace(/^.*?: /, ""));
    t.ok(error instanceof GenerateError, `${c.name}: generate fails`);
    t.match(message, c.error, `${c.name}: the error names the file or object and the reason`);
    t.equal(output, undefined, `${c.name}: no output at all`);
    count("plugin input", clear, false, output !== undefined);
  }
});

t.test("Migrator specs, pod states and waiter API requests against the live reconciler", async (t) => {
  const env = await reconcilerEnv(t);
  const digest = env.registry.push(APP_IMAGE, "latest", appImage("v1"));
  const alive = (): boolean => env.controller.synced();
  /** No Job and no recorded digest for the Migrator: nothing was half-done. */
  const untouched = async (name: string): Promise<boolean> => {
    const jobs = (await env.jobs()).filter((j) => j.metadata.name?.startsWith(`${name}-`));
    const migrator = await env.getMigrator(name);
    return jobs.length === 0 && migrator?.status?.lastSuccessfulMigration === undefined;
  };
  const condition = async (name: string, reason: string, message: RegExp, family: string): Promise<void> => {
    const m = await env.waitReason(name, reason, 90_000);
    const text = m.status?.conditions?.find((c) => c.type === "Ready")?.message ?? "";
    t.match(text, message, `${name}: ${reason} says why`);
    const clean = await untouched(name);
    t.ok(clean, `${name}: no Job, no digest recorded`);
    count(family, message.test(text), !alive(), !clean);
  };

  const specs: [string, MigratorSpec, string, RegExp][] = [
    [
      "empty-in",
      { selector: { matchExpressions: [{ key: "app", operator: "In", values: [] }] } },
      "InvalidSpec",
      /spec\.selector/,
    ],
    [
      "odd-operator",
      { selector: { matchExpressions: [{ key: "app", operator: "Near", values: ["x"] }] } },
      "InvalidSpec",
      /spec\.selector/,
    ],
    [
      "exists-values",
      { selector: { matchExpressions: [{ key: "app", operator: "Exists", values: ["x"] }] } },
      "InvalidSpec",
      /spec\.selector/,
    ],
    [
      "bad-template",
      {
        selector: { matchLabels: { app: "bt" } },
        templateSelector: { matchExpressions: [{ key: "a", operator: "NotIn" }] },
      },
      "InvalidSpec",
      /templateSelector/,
    ],
    ["nobody", { selector: { matchLabels: { app: "nobody" } } }, "WaitingForPods", /no selected pods/],
  ];
  for (const [name, spec, reason, message] of specs) {
    await env.migrator(name, spec);
    await condition(name, reason, message, "Migrator spec");
  }

  // With a gated workload: a container the pods do not have, a spec.image that is not an image reference,
  // an empty command (upstream would run the image's entrypoint — the application — as the migration).
  const gatedSpecs: [string, Partial<MigratorSpec>, RegExp][] = [
    ["nocontainer", { container: "db" }, /container "?db"?/],
    ["badimage", { image: "Registry.Example/Tools:v1" }, /invalid image reference/],
    ["nocommand", { command: [] }, /spec\.command: empty/],
  ];
  for (const [name, extra, message] of gatedSpecs) {
    await env.migrator(name, { selector: { matchLabels: { app: name } }, command: ["migrate"], ...extra });
    await env.kube.createObject(
      deployment(env.namespace, name, [appContainer(env)], { initContainers: [env.waiter(name)] }),
    );
    await condition(name, "InvalidSpec", message, "Migrator spec");
  }

  // Pod states: an image ID without a repository digest, an image that cannot be pulled.
  await env.migrator("nodigest", { selector: { matchLabels: { app: "nodigest" } } });
  await env.kube.createObject(
    pod(env.namespace, "nodigest-1", { nodeName: "elsewhere", containers: [appContainer(env)] }, { app: "nodigest" }),
  );
  await reportRunning(env, "nodigest-1", `docker://sha256:${"cd".repeat(32)}`);
  await condition("nodigest", "NoDigest", /repository digest|configuration ID/, "pod state");
  await env.migrator("unpullable", { selector: { matchLabels: { app: "unpullable" } }, command: ["migrate"] });
  await env.kube.createObject(
    deployment(env.namespace, "unpullable", [appContainer(env, "registry.example/nowhere:latest")], {
      initContainers: [env.waiter("unpullable")],
    }),
  );
  await condition("unpullable", "ProbeFailed", /cannot pull/, "pod state");

  // A gated pod deleted while its probe runs (on a node that never pulls): the probe is cleaned up.
  await env.migrator("vanishing", { selector: { matchLabels: { app: "vanishing" } } });
  await env.kube.createObject(
    pod(
      env.namespace,
      "vanishing-1",
      { nodeName: "elsewhere", containers: [appContainer(env)], initContainers: [env.waiter("vanishing")] },
      { app: "vanishing" },
    ),
  );
  await env.waitReason("vanishing", "Probing", 60_000);
  await env.kube.delete(`/api/v1/namespaces/${env.namespace}/pods/vanishing-1`, {
    apiVersion: "v1",
    kind: "DeleteOptions",
    gracePeriodSeconds: 0,
  });
  const probesGone = await waitFor(
    async () =>
      (await env.pods("migrations.coderanger.net/role=probe")).every((p) => !p.metadata.name?.startsWith("vanishing-"))
        ? true
        : undefined,
    { what: "the orphaned probe to be removed", timeoutMs: 60_000 },
  ).then(
    () => true,
    () => false,
  );
  t.ok(probesGone, "vanishing: the probe of a deleted pod is removed");
  const back = await env.waitReason("vanishing", "WaitingForPods", 60_000).then(
    () => true,
    () => false,
  );
  t.ok(back, "vanishing: back to WaitingForPods");
  count("pod state", probesGone && back, !alive(), !(await untouched("vanishing")));

  // Waiter API requests, over HTTP to the API the reconciler serves.
  await env.kube.createObject(
    deployment(env.namespace, "served", [appContainer(env)], { initContainers: [env.waiter("served")] }),
  );
  await env.migrator("served", { selector: { matchLabels: { app: "served" } }, command: ["migrate"] });
  await env.waitReady("served", digest, 90_000);
  const [served] = await env.pods("app=served");
  const podName = served?.metadata.name ?? "";
  const base = `${env.waiterUrl}${WAITER_API_PATH}`;
  const query = (over: Record<string, string | undefined> = {}): string => {
    const q: Record<string, string | undefined> = {
      namespace: env.namespace,
      pod: podName,
      migrator: "served",
      container: "app",
      timeoutSeconds: "0",
      ...over,
    };
    return `${base}?${new URLSearchParams(Object.entries(q).filter((e): e is [string, string] => e[1] !== undefined)).toString()}`;
  };
  const requests: [string, string, RequestInit, number, RegExp][] = [
    ["missing namespace", query({ namespace: undefined }), {}, 400, /namespace: is required/],
    ["upper-case pod name", query({ pod: "Web" }), {}, 400, /pod: must be a DNS-1123 subdomain/],
    ["bad pod uid", query({ podUID: "not-a-uid" }), {}, 400, /podUID: must be a UUID/],
    ["negative timeout", query({ timeoutSeconds: "-5" }), {}, 400, /timeoutSeconds/],
    ["unknown parameter", `${query()}&everything=1`, {}, 400, /unknown parameter "everything"/],
    ["repeated parameter", `${query()}&pod=other`, {}, 400, /given more than once/],
    ["oversized URL", query({ pod: `p${"x".repeat(5000)}` }), {}, 414, /./],
    ["a body", query(), { method: "POST", body: "x".repeat(64) }, 405, /./],
    ["wrong method", query(), { method: "DELETE" }, 405, /./],
    ["unknown path", `${env.waiterUrl}/v1/secrets`, {}, 404, /./],
    ["unknown pod", query({ pod: "ghost" }), {}, 200, /"reason":"UnknownPod"/],
    [
      "replaced pod (uid)",
      query({ podUID: "00000000-0000-4000-8000-000000000000" }),
      {},
      200,
      /"reason":"UnknownPod".*replaced/,
    ],
    ["unknown Migrator", query({ migrator: "ghost" }), {}, 200, /"reason":"UnknownMigrator"/],
    ["a container the pod lacks", query({ container: "db" }), {}, 200, /"reason":"UnknownContainer"/],
  ];
  for (const [name, url, init, status, body] of requests) {
    const res = await fetch(url, init);
    const raw = await res.text();
    // The reason as a client reads it: the JSON error field (quotes unescaped) beside the raw body.
    let text = raw;
    try {
      const parsed = JSON.parse(raw) as { error?: unknown };
      if (typeof parsed.error === "string") text = `${raw} ${parsed.error}`;
    } catch {
      // not JSON (e.g. 405/414 from the HTTP layer): the raw body is what a client sees
    }
    t.equal(res.status, status, `waiter API, ${name}: HTTP ${status}`);
    t.match(text, body, `waiter API, ${name}: says why`);
    if (status === 200) t.match(text, /"ready":false/, `waiter API, ${name}: never released`);
    count("waiter API request", res.status === status && body.test(text), !alive(), false);
  }
  t.ok(alive(), "the reconciler is still running");
});

t.teardown(() => {
  const rows = [...figures].map(([family, f]) => [family, f.cases, f.clear, f.crashes, f.partial]);
  const total = [...figures.values()].reduce((a, f) => a + f.cases, 0);
  rows.push([
    "total",
    total,
    rows.reduce((a, r) => a + Number(r[2]), 0),
    rows.reduce((a, r) => a + Number(r[3]), 0),
    rows.reduce((a, r) => a + Number(r[4]), 0),
  ]);
  table(
    t,
    "bad input: cases, clear errors, crashes, partial writes",
    ["family", "cases", "clear", "crashes", "partial writes"],
    rows,
  );
});
