// The rest of Argo CD's world around the plugin, through the repo-server and sidecar stand-ins:
// multi-source Applications (each source rendered on its own), what Argo CD Image Updater's write-back
// methods do to a Plugin-type Application (pkg/argocd in argocd-image-updater v1.3.0, read: plugin env
// entries, .argocd-source-<app>.yaml merged by the repo-server's mergeSourceParameters, a Helm values
// file, a kustomization's images), both resource-tracking methods, and ARGOCD_APP_PARAMETERS as Argo CD
// builds it (empty, arrays, maps, unknown names).
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { WAITER_CONTAINER_PREFIX } from "@digest-migrations/shared";
import { envMap } from "./exec.ts";
import type { KubeObject } from "./manifest-stream.ts";
import type { ApplicationSource, ManifestRequest, PluginParameter, SourcePlugin } from "./repo-server.ts";
import { namedSidecar, pluginExecutor, repoServer, sidecarEnvironment } from "./sidecar.ts";
import { waitFor } from "../kit/wait.ts";
import { TRACKING_ID } from "./tracking.ts";
import { V2_6, V3_5 } from "./versions.ts";
import { WEB_MIGRATOR_YAML, webDeploymentYaml } from "../harness/fixtures/web-yaml.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const FIXTURES = path.join(ROOT, "plugin/test/fixtures");
const PLUGIN = "digest-migrations-v1";

const scratch = mkdtempSync(path.join(tmpdir(), "dm-argocd-world-"));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
let repos = 0;
function repository(files: Record<string, string>, copies: Record<string, string> = {}): string {
  const root = path.join(scratch, `repo-${repos++}`);
  mkdirSync(root, { recursive: true });
  for (const [to, from] of Object.entries(copies)) cpSync(from, path.join(root, to), { recursive: true });
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), text);
  }
  return root;
}

function request(
  repoRoot: string,
  sourcePath: string,
  plugin: SourcePlugin,
  extra: Partial<ManifestRequest> = {},
): ManifestRequest {
  const source: ApplicationSource = {
    repoURL: "https://git.example/team/myapp.git",
    path: sourcePath,
    targetRevision: "main",
    plugin,
  };
  return {
    repoRoot,
    revision: "3f2a9c1d4b5e6f708192a3b4c5d6e7f809102a3b",
    source,
    appName: "myapp",
    namespace: "apps",
    kubeVersion: "1.31.0",
    apiVersions: ["v1", "apps/v1", "batch/v1", "migrations.coderanger.net/v1beta1"],
    ...extra,
  };
}

type Workload = KubeObject & {
  spec: { template: { spec: { initContainers?: Array<{ name: string }>; containers: Array<{ image: string }> } } };
};
const workload = (manifests: KubeObject[], kind = "Deployment"): Workload | undefined =>
  manifests.find((m) => m.kind === kind) as Workload | undefined;

const DEPLOYMENT = webDeploymentYaml("registry.example/web:latest");
const MIGRATOR = WEB_MIGRATOR_YAML;

t.test("multi-source: each source is rendered on its own", async (t) => {
  // spec.sources: [{path: migrations}, {path: app}], both through the plugin. The repo-server gets one
  // request per source; the plugin never sees the other source's files.
  const root = repository({
    "migrations/migrator.yaml": MIGRATOR,
    "app/deployment.yaml": DEPLOYMENT,
    "together/m.yaml": MIGRATOR,
    "together/d.yaml": DEPLOYMENT,
  });
  const server = repoServer();
  await t.rejects(server.generateManifests(request(root, "migrations", { name: PLUGIN })), {
    message:
      /Migrator apps\/web \(migrator\.yaml:1\): selects no workload in namespace apps; .*keep the Migrator in the same source as its workloads \(Argo CD renders each source of a multi-source Application on its own\)/,
  });
  const app = await server.generateManifests(request(root, "app", { name: PLUGIN }));
  t.equal(
    workload(app.manifests)?.spec.template.spec.initContainers,
    undefined,
    "the workload's source alone: no waiter",
  );
  // With allow-unmatched-migrators the Migrator's source renders, and the workload is still not gated.
  const allowed = await server.generateManifests(
    request(root, "migrations", { name: PLUGIN, parameters: [{ name: "allow-unmatched-migrators", string: "true" }] }),
  );
  t.same(
    allowed.manifests.map((m) => m.kind),
    ["Migrator"],
  );
  // Together in one source: wired.
  const together = await server.generateManifests(request(root, "together", { name: PLUGIN }));
  t.equal(workload(together.manifests)?.spec.template.spec.initContainers?.[0]?.name, `${WAITER_CONTAINER_PREFIX}web`);
});

t.test(
  "Image Updater, argocd write-back with manifestTargets.plugin: plugin env entries reach generate and change nothing",
  async (t) => {
    // SetPluginImage adds spec.source.plugin.env entries (manifestTargets.plugin name/tag or spec).
    const root = repository({ "deploy/d.yaml": DEPLOYMENT, "deploy/m.yaml": MIGRATOR });
    const plain = await repoServer().generateManifests(request(root, "deploy", { name: PLUGIN }));
    const sidecar = namedSidecar();
    const updated = await repoServer(undefined, [sidecar]).generateManifests(
      request(root, "deploy", { name: PLUGIN, env: [{ name: "WEB_IMAGE", value: "registry.example/web:1.2.3" }] }),
    );
    t.equal(
      envMap(sidecar.runs.at(-1)?.env ?? [])["ARGOCD_ENV_WEB_IMAGE"],
      "registry.example/web:1.2.3",
      "the entry arrives",
    );
    t.same(updated.manifests, plain.manifests, "the plugin reads no image from env: the output is the same");
  },
);

t.test("Image Updater, git write-back to .argocd-source-<app>.yaml", async (t) => {
  // The default write-back target: a file the repo-server merges into the source (mergeSourceParameters).
  const helmOverride = "helm:\n  parameters:\n    - name: image.tag\n      value: 1.2.3\n      forcestring: true\n";
  const root = repository({
    "deploy/d.yaml": DEPLOYMENT,
    "deploy/m.yaml": MIGRATOR,
    "deploy/.argocd-source-myapp.yaml": helmOverride,
  });
  await t.rejects(
    repoServer().generateManifests(request(root, "deploy", { name: PLUGIN })),
    {
      message: /error getting app source type: multiple application sources defined: Helm,Plugin/,
    },
    "Helm parameters on a Plugin source: Argo CD refuses the source",
  );
  const envOverride = "plugin:\n  env:\n    - name: WEB_IMAGE\n      value: registry.example/web:1.2.3\n";
  const root2 = repository({
    "deploy/d.yaml": DEPLOYMENT,
    "deploy/m.yaml": MIGRATOR,
    "deploy/.argocd-source-myapp.yaml": envOverride,
  });
  const sidecar = namedSidecar();
  const r = await repoServer(undefined, [sidecar]).generateManifests(request(root2, "deploy", { name: PLUGIN }));
  t.equal(
    envMap(sidecar.runs.at(-1)?.env ?? [])["ARGOCD_ENV_WEB_IMAGE"],
    "registry.example/web:1.2.3",
    "plugin env merged from git",
  );
  t.equal(workload(r.manifests)?.spec.template.spec.containers[0]?.image, "registry.example/web:latest", "and ignored");
});

t.test(
  "Image Updater, git write-back to a Helm values file (helmvalues:<file>) listed in helm-values-files",
  async (t) => {
    const root = repository(
      { "chart/values-image.yaml": "image: registry.example/billing:1.2.3\n" },
      { chart: path.join(FIXTURES, "helm") },
    );
    const params: PluginParameter[] = [{ name: "helm-values-files", array: ["values-image.yaml"] }];
    const r = await repoServer().generateManifests(request(root, "chart", { name: PLUGIN, parameters: params }));
    const images = r.manifests.flatMap(
      (m) => (m as Workload).spec?.template?.spec?.containers?.map((c) => c.image) ?? [],
    );
    t.ok(
      images.length > 0 && images.every((i) => i === "registry.example/billing:1.2.3"),
      `the values file wins: ${images.join(", ")}`,
    );
  },
);

t.test("Image Updater, git write-back to kustomization.yaml images", async (t) => {
  const kustomization = "resources: [d.yaml, m.yaml]\nimages:\n  - name: registry.example/web\n    newTag: 1.2.3\n";
  const root = repository({
    "deploy/kustomization.yaml": kustomization,
    "deploy/d.yaml": DEPLOYMENT,
    "deploy/m.yaml": MIGRATOR,
  });
  const r = await repoServer().generateManifests(request(root, "deploy", { name: PLUGIN }));
  t.equal(workload(r.manifests)?.spec.template.spec.containers[0]?.image, "registry.example/web:1.2.3");
  t.equal(
    workload(r.manifests)?.spec.template.spec.initContainers?.[0]?.name,
    `${WAITER_CONTAINER_PREFIX}web`,
    "still gated",
  );
});

t.test(
  "resource tracking: label (v2 default) and annotation (v3 default) on every object, wiring intact",
  async (t) => {
    const root = repository({ "deploy/d.yaml": DEPLOYMENT, "deploy/m.yaml": MIGRATOR });
    const labelled = await repoServer(V2_6, [namedSidecar({ version: V2_6 })]).generateManifests(
      request(root, "deploy", { name: PLUGIN }),
    );
    const annotated = await repoServer(V3_5).generateManifests(request(root, "deploy", { name: PLUGIN }));
    for (const m of labelled.manifests)
      t.equal(m.metadata?.labels?.["app.kubernetes.io/instance"], "myapp", `label on ${m.kind}`);
    t.same(
      annotated.manifests.map((m) => m.metadata?.annotations?.[TRACKING_ID]),
      ["myapp:migrations.coderanger.net/Migrator:apps/web", "myapp:apps/Deployment:apps/web"],
    );
    for (const r of [labelled, annotated]) {
      t.equal(workload(r.manifests)?.spec.template.spec.initContainers?.[0]?.name, `${WAITER_CONTAINER_PREFIX}web`);
      t.notOk(
        JSON.stringify(workload(r.manifests)?.spec.template).includes("app.kubernetes.io/instance"),
        "pod templates untouched",
      );
    }
    // The tracked output, rendered again as a plain directory, is unchanged: tracking does not disturb the wiring.
    const again = repository({
      "deploy/out.yaml": annotated.manifests.map((m) => `---\n${JSON.stringify(m)}\n`).join(""),
    });
    const rerendered = await repoServer().generateManifests(request(again, "deploy", { name: PLUGIN }));
    t.same(rerendered.manifests, annotated.manifests, "idempotent with the tracking annotation in place");
  },
);

t.test("ARGOCD_APP_PARAMETERS edge cases, as Argo CD builds them", async (t) => {
  const root = repository({ "deploy/d.yaml": DEPLOYMENT, "deploy/m.yaml": MIGRATOR });
  const waiterImage = async (plugin: SourcePlugin): Promise<string | undefined> => {
    const r = await repoServer().generateManifests(request(root, "deploy", plugin));
    const init = workload(r.manifests)?.spec.template.spec.initContainers?.[0] as { image?: string } | undefined;
    return init?.image;
  };
  const sidecarDefault = "ghcr.io/digest-migrations/reconciler:0.1.0";
  t.equal(
    await waiterImage({ name: PLUGIN }),
    sidecarDefault,
    "no parameters (ARGOCD_APP_PARAMETERS=null): the sidecar's install default",
  );
  t.equal(await waiterImage({ name: PLUGIN, parameters: [] }), sidecarDefault, "an empty list ([])");
  t.equal(
    await waiterImage({ name: PLUGIN, parameters: [{ name: "waiter-image", string: "" }] }),
    sidecarDefault,
    "an empty string",
  );
  t.equal(await waiterImage({ name: PLUGIN, parameters: [{ name: "waiter-image", string: "w:2" }] }), "w:2");
  t.equal(
    await waiterImage({ name: PLUGIN, env: [{ name: "WAITER_IMAGE", value: "w:$ARGOCD_APP_REVISION_SHORT" }] }),
    "w:3f2a9c1",
    "plugin env, expanded against the build environment",
  );
  await t.rejects(
    repoServer().generateManifests(
      request(root, "deploy", { name: PLUGIN, parameters: [{ name: "waiter-imag", string: "w:2" }] }),
    ),
    {
      message:
        /digest-migrations: spec\.source\.plugin\.parameters: "waiter-imag" is not a parameter of this plugin \(parameters: waiter-image, /,
    },
  );
  await t.rejects(
    repoServer().generateManifests(
      request(root, "deploy", { name: PLUGIN, parameters: [{ name: "helm-values-files", string: "v.yaml" }] }),
    ),
    { message: /"helm-values-files" takes an array \(array: …\), not a string/ },
  );
  // Arrays and maps on a Helm source.
  const chart = repository({ "chart/values-prod.yaml": "replicas: 4\n" }, { chart: path.join(FIXTURES, "helm") });
  const r = await repoServer().generateManifests(
    request(chart, "chart", {
      name: PLUGIN,
      parameters: [
        { name: "helm-values-files", array: ["values-prod.yaml"] },
        { name: "helm-parameters", map: { image: "registry.example/billing:9.9.9" } },
      ],
    }),
  );
  const replicas = r.manifests
    .map((m) => (m as { spec?: { replicas?: number } }).spec?.replicas)
    .filter((x) => x !== undefined);
  t.ok(replicas.includes(4), `the values file from the array parameter (replicas ${replicas.join(", ")})`);
  const images = r.manifests.flatMap(
    (m) => (m as Workload).spec?.template?.spec?.containers?.map((c) => c.image) ?? [],
  );
  t.ok(images.includes("registry.example/billing:9.9.9"), "the map parameter as --set");
});

t.test(
  "generate's deadline: Argo CD kills the plugin and the renderer it started; the plugin's own limit comes first",
  async (t) => {
    // A kustomize that never finishes, first on the sidecar's PATH (the plugin prefers kustomize to kubectl).
    const bin = path.join(scratch, "slow-bin");
    const pidFile = path.join(scratch, "slow-kustomize.pid");
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, "kustomize"), `#!/bin/sh\necho $$ > ${pidFile}\nexec tail -f /dev/null\n`, {
      mode: 0o755,
    });
    const root = repository({ "deploy/kustomization.yaml": "resources: [d.yaml]\n", "deploy/d.yaml": DEPLOYMENT });
    const sidecarPath = `${bin}:${sidecarEnvironment().PATH}`;

    const killed = namedSidecar({ env: { PATH: sidecarPath }, executor: pluginExecutor({ cleanupTimeoutMs: 300 }) });
    const started = Date.now();
    await t.rejects(
      repoServer(V3_5, [killed]).generateManifests(request(root, "deploy", { name: PLUGIN }, { timeoutMs: 1_500 })),
      {
        message:
          /error generating manifests: `node \/opt\/digest-migrations\/digest-migrations-plugin\.mjs generate` failed signal: killed$/,
      },
      "at the request's deadline (less 100 ms) the UI gets only 'signal: killed'",
    );
    t.ok(Date.now() - started < 10_000, "killed at the deadline, not after the plugin's own limit");
    const pid = Number(readFileSync(pidFile, "utf8"));
    await waitFor(() => (alive(pid) ? undefined : true), {
      what: `the renderer ${pid} to be gone with its process group`,
      timeoutMs: 10_000,
    });
    t.pass("the renderer the plugin started went with the process group");

    const limited = namedSidecar({ env: { PATH: sidecarPath, DIGEST_MIGRATIONS_RENDER_TIMEOUT_SECONDS: "1" } });
    await t.rejects(
      repoServer(V3_5, [limited]).generateManifests(request(root, "deploy", { name: PLUGIN }, { timeoutMs: 20_000 })),
      {
        message: /digest-migrations: `kustomize build \.` failed: timed out after 1s$/,
      },
      "below Argo CD's deadline the plugin's own limit names the tool",
    );
  },
);

/** The process runs (a zombie, killed but not yet reaped by whoever inherited it, does not). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}
