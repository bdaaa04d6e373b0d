// Bad input end to end, by family: each case gets a clear error or condition naming the object and
// the reason, nothing crashes, and nothing is half-written (the plugin prints nothing on stdout; the
// reconciler creates no Job and records no digest for a Migrator it cannot serve). The plugin's input
// goes through generate as Argo CD calls it (rendering only: the bundle on this machine); everything
// else runs against the chart-installed reconciler on the real node, under its shipped RBAC, with real
// pods: wrong Migrator specs, pod states (an image the node has but no registry serves, an image that
// does not exist, a gated pod deleted mid-probe), and requests to the waiter API it serves.
// plugin/test/cli.test.ts holds the plugin's other hostile inputs (alias bombs, symlinks, huge files,
// exec plugins, …); reconciler/src/waiter-api.test.ts the waiter API's limits against a scripted oracle.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { API_VERSION, CONDITION_READY, KIND, WAITER_API_PATH, waiterInitContainer } from "@digest-migrations/shared";
import type { Container, KubeObject, Migrator, MigratorSpec, Pod } from "@digest-migrations/shared";
import {
  APP_CONTAINER,
  APP_REPOSITORY,
  APP_TAG,
  DATABASE_SECRET,
  DEPLOYMENT as SHOP_DEPLOYMENT,
  MIGRATOR as SHOP_MIGRATOR,
} from "../apps/shop/builds.ts";
import { deployment, pod } from "../harness/objects.ts";
import type { ObjectList } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";
import { GenerateError, generate } from "../pipeline/sync.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { nodeOnlyImage, nodeOnlyPod } from "../world/node-only-image.ts";
import { table } from "./report.ts";
import { WEB_MIGRATOR_YAML, webDeploymentYaml } from "../harness/fixtures/web-yaml.ts";

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

const DEPLOYMENT = webDeploymentYaml("registry.example/app:latest");
const MIGRATOR = WEB_MIGRATOR_YAML;

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
  // One replica: every case is answered by the same process, whose restarts say whether it crashed.
  const shop = await startShop(t, { reconciler: { replicas: 1 } });
  const env = shop.env;
  const ns = env.namespace;
  const migrators = `/apis/${API_VERSION}/namespaces/${ns}/migrators`;
  // The shop itself is the served case: synced now, asked over the waiter API once rolled out.
  const digest = await shop.push("v1");
  await shop.sync();
  const image = env.images.ref(APP_REPOSITORY, APP_TAG);

  /** The reconciler never restarted (a crash, a failed liveness probe) and is Ready. */
  const alive = async (): Promise<boolean> => {
    const pods = await shop.release.pods();
    const ready = pods.filter((p) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
    return ready.length === 1 && (await shop.release.restarts()).length === 0;
  };
  const createMigrator = (name: string, spec: MigratorSpec): Promise<Migrator> =>
    env.kube.create<Migrator>(migrators, {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name, namespace: ns },
      spec,
    });
  const waitReason = (name: string, reason: string, timeoutMs = 120_000): Promise<Migrator> =>
    waitFor(
      async () => {
        const m = await env.kube.find<Migrator>(`${migrators}/${name}`);
        return m?.status?.conditions?.find((c) => c.type === CONDITION_READY)?.reason === reason ? m : undefined;
      },
      {
        what: `Migrator ${name} to say ${reason}`,
        timeoutMs,
        describe: async () => JSON.stringify((await env.kube.find<Migrator>(`${migrators}/${name}`))?.status),
      },
    );
  const podsOf = async (selector: string): Promise<Pod[]> =>
    (
      await env.kube.request<ObjectList<Pod>>("GET", `/api/v1/namespaces/${ns}/pods`, {
        query: { labelSelector: selector },
      })
    ).items;
  /** No Job and no recorded digest for the Migrator: nothing was half-done. */
  const untouched = async (name: string): Promise<boolean> => {
    const jobs = (await shop.jobs()).filter((j) => j.metadata.name?.startsWith(`${name}-`));
    const migrator = await env.kube.find<Migrator>(`${migrators}/${name}`);
    return jobs.length === 0 && migrator?.status?.lastSuccessfulMigration === undefined;
  };
  const condition = async (name: string, reason: string, message: RegExp, family: string): Promise<void> => {
    const m = await waitReason(name, reason);
    const text = m.status?.conditions?.find((c) => c.type === CONDITION_READY)?.message ?? "";
    t.match(text, message, `${name}: ${reason} says why`);
    const clean = await untouched(name);
    t.ok(clean, `${name}: no Job, no digest recorded`);
    count(family, message.test(text), !(await alive()), !clean);
  };
  /** The app container as the shop's pods have it: its image, its database Secret. */
  const appContainer = (ref = image): Container => ({
    name: APP_CONTAINER,
    image: ref,
    env: [{ name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: DATABASE_SECRET, key: "url" } } }],
  });
  /** A Deployment `name` of pods labelled app=<name>, gated by Migrator `name`, on the host network. */
  const gatedDeployment = (name: string, ref = image): KubeObject => {
    const waiter = waiterInitContainer(name, APP_CONTAINER, {
      image: env.world.images.reconciler,
      apiUrl: shop.release.waiterUrl,
    });
    const d = deployment(ns, name, [appContainer(ref)], { initContainers: [waiter] });
    const spec = (d.spec as { template: { spec: Record<string, unknown> } }).template.spec;
    Object.assign(spec, { hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet" });
    return d;
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
    await createMigrator(name, spec);
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
    await createMigrator(name, { selector: { matchLabels: { app: name } }, command: ["migrate"], ...extra });
    await env.kube.createObject(gatedDeployment(name));
    await condition(name, "InvalidSpec", message, "Migrator spec");
  }

  // Pod states: an image the node runs without a repository digest (imported into containerd, never
  // pulled); an image no registry has (the probe's pull fails).
  const local = (await nodeOnlyImage(t, shop.env, "local")).ref;
  await createMigrator("nodigest", { selector: { matchLabels: { app: "nodigest" } } });
  await env.kube.createObject(nodeOnlyPod(ns, "nodigest-1", local, "nodigest"));
  await condition("nodigest", "NoDigest", /repository digest|configuration ID/, "pod state");
  await createMigrator("unpullable", { selector: { matchLabels: { app: "unpullable" } }, command: ["migrate"] });
  await env.kube.createObject(gatedDeployment("unpullable", env.images.ref("nowhere", APP_TAG)));
  await condition("unpullable", "ProbeFailed", /cannot pull/, "pod state");

  // A gated pod deleted while its probe runs. It is bound to a node that does not exist, so no kubelet
  // ever pulls and the probe stays pending; the pod garbage collector would remove both pods only
  // after its 40 s quarantine, so a probe gone sooner was removed by the reconciler.
  await createMigrator("vanishing", { selector: { matchLabels: { app: "vanishing" } } });
  await env.kube.createObject(
    pod(
      ns,
      "vanishing-1",
      {
        nodeName: "elsewhere",
        containers: [appContainer()],
        initContainers: [
          waiterInitContainer("vanishing", APP_CONTAINER, {
            image: env.world.images.reconciler,
            apiUrl: shop.release.waiterUrl,
          }),
        ],
      },
      { app: "vanishing" },
    ),
  );
  await waitReason("vanishing", "Probing", 30_000);
  await env.kube.delete(`/api/v1/namespaces/${ns}/pods/vanishing-1`, {
    apiVersion: "v1",
    kind: "DeleteOptions",
    gracePeriodSeconds: 0,
  });
  const probesGone = await waitFor(
    async () =>
      (await podsOf("migrations.coderanger.net/role=probe")).every((p) => !p.metadata.name?.startsWith("vanishing-"))
        ? true
        : undefined,
    { what: "the orphaned probe to be removed", timeoutMs: 20_000 },
  ).then(
    () => true,
    () => false,
  );
  t.ok(probesGone, "vanishing: the probe of a deleted pod is removed");
  const back = await waitReason("vanishing", "WaitingForPods", 30_000).then(
    () => true,
    () => false,
  );
  t.ok(back, "vanishing: back to WaitingForPods");
  count("pod state", probesGone && back, !(await alive()), !(await untouched("vanishing")));

  // Waiter API requests, over HTTP to the API the reconciler serves, about the shop's released pods.
  await shop.waitMigrated(digest);
  const [served] = await shop.waitRolledOut(digest);
  const podName = served?.name ?? "";
  const base = `${shop.release.waiterUrl}${WAITER_API_PATH}`;
  const query = (over: Record<string, string | undefined> = {}): string => {
    const q: Record<string, string | undefined> = {
      namespace: ns,
      pod: podName,
      migrator: SHOP_MIGRATOR,
      container: APP_CONTAINER,
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
    ["unknown path", `${shop.release.waiterUrl}/v1/secrets`, {}, 404, /./],
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
    count("waiter API request", res.status === status && body.test(text), !(await alive()), false);
  }
  // The well-formed question about the same pod is answered: released, with its digest.
  const answer = (await (await fetch(query())).json()) as { ready?: boolean; digest?: string };
  t.match(answer, { ready: true, digest }, `waiter API: ${podName} of ${SHOP_DEPLOYMENT} is released with its digest`);
  t.ok(await alive(), "the reconciler is still running, never restarted");
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
