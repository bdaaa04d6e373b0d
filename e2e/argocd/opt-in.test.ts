// Every documented way of opting an Application in, through the repo-server and argocd-cmp-server
// stand-ins configured by the shipped plugin/plugin.yaml and plugin/plugin-discovery.yaml, for each Argo CD
// release whose behaviour differs (versions.ts). Argo CD's rule (util/app/discovery/discovery.go
// cmpSupports): a plugin whose configuration has discovery rules serves a named Application only when the
// rules match too; a plugin without rules serves only Applications that name it.
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { WAITER_CONTAINER_PREFIX } from "@digest-migrations/shared";
import { readPluginConfig, servedName } from "./plugin-config.ts";
import type { PluginConfig } from "./plugin-config.ts";
import { ManifestGenerationError, NotAPluginSourceError } from "./repo-server.ts";
import type { ApplicationSource, ManifestRequest, SourcePlugin } from "./repo-server.ts";
import {
  DISCOVERY_PLUGIN_FILE,
  NAMED_PLUGIN_FILE,
  discoverySidecar,
  namedSidecar,
  repoServer,
  sidecar,
  sidecarEnvironment,
} from "./sidecar.ts";
import { ARGOCD_VERSIONS } from "./versions.ts";
import type { ArgoCDVersion } from "./versions.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const SEED = path.join(ROOT, "plugin/test/fixtures/seed");
const NAMED = servedName(readPluginConfig(NAMED_PLUGIN_FILE));
const DISCOVERY = servedName(readPluginConfig(DISCOVERY_PLUGIN_FILE));
const MARKER = ".digest-migrations.yaml";

const scratch = mkdtempSync(path.join(tmpdir(), "dm-opt-in-"));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
let repos = 0;

/** A git checkout holding the seed application (a Deployment and its Migrator) in deploy/. */
function repository(options: { marker?: boolean; extra?: Record<string, string> } = {}): string {
  const root = path.join(scratch, `repo-${repos++}`);
  cpSync(SEED, path.join(root, "deploy"), { recursive: true });
  if (options.marker) writeFileSync(path.join(root, "deploy", MARKER), "");
  for (const [rel, text] of Object.entries(options.extra ?? {})) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), text);
  }
  return root;
}

function request(
  repoRoot: string,
  plugin: SourcePlugin | undefined,
  extra: Partial<ApplicationSource> = {},
): ManifestRequest {
  return {
    repoRoot,
    revision: "3f2a9c1d4b5e6f708192a3b4c5d6e7f809102a3b",
    source: {
      repoURL: "https://git.example/team/myapp.git",
      path: "deploy",
      targetRevision: "main",
      ...(plugin === undefined ? {} : { plugin }),
      ...extra,
    },
    appName: "myapp",
    namespace: "apps",
    projectName: "default",
    kubeVersion: "1.20.2",
    apiVersions: ["v1", "apps/v1", "migrations.coderanger.net/v1beta1"],
  };
}

/** The Deployment's first init container: the waiter the plugin injects. */
function waiterOf(manifests: Array<{ kind: string; [k: string]: unknown }>): string | undefined {
  const d = manifests.find((m) => m.kind === "Deployment") as
    { spec?: { template?: { spec?: { initContainers?: Array<{ name: string }> } } } } | undefined;
  return d?.spec?.template?.spec?.initContainers?.[0]?.name;
}

/** The configuration shipped before this layout: the named plugin with discovery rules. */
function namedWithDiscoveryRules(): PluginConfig {
  const config = readPluginConfig(NAMED_PLUGIN_FILE);
  return { ...config, spec: { ...config.spec, discover: { fileName: MARKER } } };
}

for (const version of ARGOCD_VERSIONS) {
  const both = (): ReturnType<typeof repoServer> => repoServer(version);

  t.test(`Argo CD ${version.tag}`, async (t) => {
    t.test("regression: a named Application without a marker file is rendered", async (t) => {
      const r = await both().generateManifests(request(repository(), { name: NAMED }));
      t.equal(r.plugin, `${NAMED}.sock`);
      t.equal(waiterOf(r.manifests), `${WAITER_CONTAINER_PREFIX}myapp-migrations`, "the waiter is injected");
      t.same(
        r.manifests.map((m) => m.kind),
        ["Migrator", "Deployment"],
      );

      // The same Application against a plugin whose configuration has discovery rules (plugin.yaml as it
      // was shipped before): Argo CD refuses it unless the marker is there too.
      const old = repoServer(version, [sidecar(namedWithDiscoveryRules(), sidecarEnvironment(), { version })]);
      await t.rejects(old.generateManifests(request(repository(), { name: NAMED })), {
        name: "ManifestGenerationError",
        message: version.pluginFailed("myapp", version.namedNotFound(NAMED)),
      });
      const withMarker = await old.generateManifests(request(repository({ marker: true }), { name: NAMED }));
      t.equal(
        waiterOf(withMarker.manifests),
        `${WAITER_CONTAINER_PREFIX}myapp-migrations`,
        "…and serves it with the marker",
      );
    });

    t.test("named, with only the named sidecar installed, a marker present or not", async (t) => {
      for (const marker of [false, true]) {
        const server = namedSidecar({ version });
        const r = await repoServer(version, [server]).generateManifests(
          request(repository({ marker }), { name: NAMED }),
        );
        t.equal(waiterOf(r.manifests), `${WAITER_CONTAINER_PREFIX}myapp-migrations`, `marker ${marker}`);
        t.equal(
          server.streamsReceived,
          version.checkPluginConfiguration ? 1 : 2,
          "MatchRepository is asked only before v2.13",
        );
      }
    });

    t.test("discovery: plugin: {} with the marker goes to the discovery sidecar", async (t) => {
      const r = await both().generateManifests(request(repository({ marker: true }), {}));
      t.equal(r.plugin, `${DISCOVERY}.sock`);
      t.equal(waiterOf(r.manifests), `${WAITER_CONTAINER_PREFIX}myapp-migrations`);
    });

    t.test("discovery, named: the discovery plugin by name needs the marker", async (t) => {
      const r = await both().generateManifests(request(repository({ marker: true }), { name: DISCOVERY }));
      t.equal(r.plugin, `${DISCOVERY}.sock`);
      await t.rejects(both().generateManifests(request(repository(), { name: DISCOVERY })), {
        message: version.pluginFailed("myapp", version.namedNotFound(DISCOVERY)),
      });
    });

    t.test("discovery: plugin: {} without the marker is a clear error, not a silent fallback", async (t) => {
      await t.rejects(both().generateManifests(request(repository(), {})), {
        message: version.pluginFailed("myapp", "could not find plugin supporting the given repository"),
      });
    });

    t.test(
      "no plugin section: the marker routes the app; without it Argo CD renders the directory itself",
      async (t) => {
        const r = await both().generateManifests(request(repository({ marker: true }), undefined));
        t.equal(r.plugin, `${DISCOVERY}.sock`, "discovered (GetAppSourceType → Discover)");
        t.equal(waiterOf(r.manifests), `${WAITER_CONTAINER_PREFIX}myapp-migrations`);
        await t.rejects(
          both().generateManifests(request(repository(), undefined)),
          new NotAPluginSourceError("Directory"),
        );
        // Only the named sidecar installed: the marker alone leads nowhere either.
        await t.rejects(
          repoServer(version, [namedSidecar({ version })]).generateManifests(
            request(repository({ marker: true }), undefined),
          ),
          NotAPluginSourceError,
        );
      },
    );

    t.test("a named Application whose sidecar is missing names the plugin", async (t) => {
      await t.rejects(
        repoServer(version, [discoverySidecar({ version })]).generateManifests(
          request(repository({ marker: true }), { name: NAMED }),
        ),
        {
          message: new RegExp(`plugin with name "?${NAMED}"? supporting the given repository`),
        },
      );
    });

    t.test("two plugins side by side: each app goes to the one it names or matches", async (t) => {
      // Another team's plugin, discovered by a find.glob, next to both of ours.
      const jsonnet = sidecar(
        {
          kind: "ConfigManagementPlugin",
          metadata: { name: "jsonnet" },
          spec: {
            version: "v2",
            generate: {
              command: [
                "sh",
                "-c",
                'printf \'%s\' \'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-jsonnet"}}\'',
              ],
            },
            discover: { find: { glob: "**/*.jsonnet" } },
          },
        },
        { PATH: "/usr/bin:/bin" },
        { version },
      );
      const three = repoServer(version, [jsonnet, namedSidecar({ version }), discoverySidecar({ version })]);
      const jsonnetApp = repository({ extra: { "deploy/lib/main.jsonnet": "{}" } });
      t.same(
        (await three.generateManifests(request(jsonnetApp, {}))).manifests.map((m) => m.metadata?.name),
        ["from-jsonnet"],
      );
      t.equal(
        (await three.generateManifests(request(jsonnetApp, { name: NAMED }))).plugin,
        `${NAMED}.sock`,
        "naming ours wins over their match",
      );
      t.equal((await three.generateManifests(request(repository({ marker: true }), {}))).plugin, `${DISCOVERY}.sock`);
      // Both rules match: the first socket by name wins (os.ReadDir is sorted) — name the plugin to choose.
      const both2 = repository({ marker: true, extra: { "deploy/main.jsonnet": "{}" } });
      t.equal(
        (await three.generateManifests(request(both2, {}))).plugin,
        `${DISCOVERY}.sock`,
        "digest-migrations-discovery-v1.sock sorts before jsonnet-v2.sock",
      );
      t.equal((await three.generateManifests(request(both2, { name: "jsonnet-v2" }))).plugin, "jsonnet-v2.sock");
    });
  });
}

t.test("the example Application and ApplicationSet name the plugin as the named sidecar serves it", async (t) => {
  const { parse } = await import("yaml");
  const { readFileSync } = await import("node:fs");
  const app = parse(readFileSync(path.join(ROOT, "plugin/deploy/example-application.yaml"), "utf8")) as {
    spec: { source: ApplicationSource };
  };
  const set = parse(readFileSync(path.join(ROOT, "plugin/deploy/example-applicationset.yaml"), "utf8")) as {
    spec: {
      template: { metadata: { name: string }; spec: { source: ApplicationSource; destination: { namespace: string } } };
    };
  };
  t.equal(app.spec.source.plugin?.name, NAMED);
  const template = set.spec.template.spec.source;
  t.equal(template.plugin?.name, NAMED);
  // The template filled in for one directory, as the git directory generator would (path.path, path.basename).
  const root = repository();
  const filled: ApplicationSource = { ...template, path: "deploy" };
  const r = await repoServer().generateManifests({
    ...request(root, filled.plugin, filled),
    appName: "deploy",
    namespace: "deploy",
  });
  t.equal(
    waiterOf(r.manifests),
    `${WAITER_CONTAINER_PREFIX}myapp-migrations`,
    "an Application generated from the template renders",
  );
  t.match(set.spec.template.metadata.name, /\{\{ \.path\.basename \}\}/);
});

t.test("a ManifestGenerationError carries the reason the Application's condition shows", async (t) => {
  const version: ArgoCDVersion = ARGOCD_VERSIONS[ARGOCD_VERSIONS.length - 1]!;
  const root = repository({
    extra: { "deploy/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n" },
  });
  const error = await repoServer(version)
    .generateManifests(request(root, { name: NAMED }))
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  t.type(error, ManifestGenerationError);
  t.match(
    (error as Error).message,
    /error generating manifests: `node \/opt\/digest-migrations\/digest-migrations-plugin\.mjs generate` failed exit status 1: digest-migrations: bad\.yaml:5: /,
  );
});
