// The plugin as Argo CD runs it: the CLI (from source, and the built bundle) in an application directory
// with Argo CD's environment, real helm and kubectl binaries on PATH. Output is compared with golden files
// (UPDATE_GOLDEN=1 rewrites them), rendered twice for determinism and re-rendered for idempotency; every
// error path must exit non-zero with one line on stderr and nothing on stdout.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { tools } from "./tools.ts";
import { tempDir } from "./temp.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const fixtures = path.join(here, "fixtures");
const golden = path.join(here, "golden");
const source = path.join(root, "plugin/src/cli.ts");
const bundle = path.join(root, "plugin/dist/digest-migrations-plugin.mjs");
const bin = tools().bin;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(entry: string, args: string[], cwd: string, env: Record<string, string>): Run {
  const r = spawnSync(process.execPath, [entry, ...args], { cwd, env, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The environment Argo CD's repo-server gives a plugin (reposerver getPluginEnvs + the sidecar's own env). */
function argoEnv(app: { name: string; namespace: string; sourcePath: string }, extra: Record<string, string> = {}) {
  return {
    PATH: `${bin}${path.delimiter}${process.env["PATH"] ?? ""}`,
    HOME: tmpdir(),
    DIGEST_MIGRATIONS_WAITER_IMAGE: "registry.example/digest-migrations/reconciler:1.0.0",
    DIGEST_MIGRATIONS_RECONCILER_URL: "http://digest-migrations.digest-migrations-system.svc:8443",
    ARGOCD_APP_NAME: app.name,
    ARGOCD_APP_NAMESPACE: app.namespace,
    ARGOCD_APP_PROJECT_NAME: "default",
    ARGOCD_APP_REVISION: "0123456789abcdef0123456789abcdef01234567",
    ARGOCD_APP_REVISION_SHORT: "0123456",
    ARGOCD_APP_SOURCE_REPO_URL: "https://git.example/team/apps.git",
    ARGOCD_APP_SOURCE_PATH: app.sourcePath,
    ARGOCD_APP_SOURCE_TARGET_REVISION: "main",
    KUBE_VERSION: "1.31.0",
    KUBE_API_VERSIONS: "v1,apps/v1,batch/v1,argoproj.io/v1alpha1,argoproj.io/v1alpha1/Rollout",
    ...extra,
  };
}

/** Argo CD's parameter variables for an Application's spec.source.plugin.parameters. */
function paramEnv(params: { name: string; string?: string; array?: string[]; map?: Record<string, string> }[]) {
  const env: Record<string, string> = { ARGOCD_APP_PARAMETERS: JSON.stringify(params) };
  for (const p of params) {
    const base = `PARAM_${p.name.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`;
    if (p.string !== undefined) env[base] = p.string;
    p.array?.forEach((v, i) => (env[`${base}_${i}`] = v));
    for (const [k, v] of Object.entries(p.map ?? {})) env[`${base}_${k.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`] = v;
  }
  return env;
}

const apps = [
  { golden: "seed", name: "myapp", namespace: "apps", sourcePath: "seed", env: {} },
  {
    golden: "plain",
    name: "shop",
    namespace: "shop",
    sourcePath: "plain",
    env: paramEnv([{ name: "waiter-image", string: "registry.example/waiter:2.0.0" }]),
  },
  { golden: "kustomize", name: "payments", namespace: "payments", sourcePath: "kustomize/overlay", env: {} },
  {
    golden: "helm",
    name: "team_billing",
    namespace: "billing",
    sourcePath: "helm",
    env: paramEnv([
      { name: "helm-values", string: "image: registry.example/billing:edge\n" },
      { name: "helm-parameters", map: { replicas: "3" } },
    ]),
  },
];

for (const app of apps) {
  t.test(`${app.golden}: generate matches the golden file, deterministically and idempotently`, async (t) => {
    const env = argoEnv(app, app.env);
    const cwd = path.join(fixtures, app.sourcePath);
    const first = runCli(source, ["generate"], cwd, env);
    t.equal(first.code, 0, first.stderr);
    t.equal(first.stderr, "");
    const goldenFile = path.join(golden, `${app.golden}.json`);
    if (process.env["UPDATE_GOLDEN"] === "1") writeFileSync(goldenFile, first.stdout);
    t.equal(first.stdout, readFileSync(goldenFile, "utf8"), "matches golden");

    const second = runCli(source, ["generate"], cwd, env);
    t.equal(second.stdout, first.stdout, "byte-identical on a second run");

    // Idempotency: the plugin's own output, as a plain directory, renders to itself.
    const again = tempDir("dm-idem-");
    writeFileSync(path.join(again, "rendered.yaml"), first.stdout);
    const third = runCli(source, ["generate"], again, { ...env, ARGOCD_APP_SOURCE_PATH: "" });
    t.equal(third.code, 0, third.stderr);
    t.equal(third.stdout, first.stdout, "rendering the output again changes nothing");
  });
}

t.test("the built bundle gives the same output as the source", async (t) => {
  if (!existsSync(bundle)) {
    const build = spawnSync("npm", ["run", "build"], { cwd: root, encoding: "utf8" });
    t.equal(build.status, 0, build.stderr);
  }
  const app = apps[0]!;
  const r = runCli(bundle, ["generate"], path.join(fixtures, app.sourcePath), argoEnv(app));
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, readFileSync(path.join(golden, "seed.json"), "utf8"));
  // The entry starts kustomize or helm before it loads the YAML parser and the rest (plugin/src/generate.ts).
  const entry = readFileSync(bundle, "utf8");
  t.notMatch(entry, /function parseEvents\(/, "the YAML parser is not in the entry");
  t.match(entry, /import\("\.\/assemble-[\w-]+\.mjs"\)/, "it is in a chunk imported once the renderer runs");
  const kustomize = apps.find((a) => a.golden === "kustomize")!;
  const k = runCli(bundle, ["generate"], path.join(fixtures, kustomize.sourcePath), argoEnv(kustomize));
  t.equal(k.code, 0, k.stderr);
  t.equal(k.stdout, readFileSync(path.join(golden, "kustomize.json"), "utf8"));
  const bad = runCli(bundle, ["generate"], tempDir("dm-"), {
    ...argoEnv(app),
    ARGOCD_APP_PARAMETERS: "[",
  });
  t.equal(bad.code, 1);
  t.equal(bad.stdout, "");
  t.match(bad.stderr, /^digest-migrations: ARGOCD_APP_PARAMETERS is not JSON/);
});

t.test("render and explain for people", async (t) => {
  const dir = path.join(fixtures, "seed");
  const env = { PATH: process.env["PATH"] ?? "", HOME: tmpdir() };
  const yaml = runCli(source, ["render", dir, "-n", "apps"], root, env);
  t.equal(yaml.code, 0, yaml.stderr);
  t.match(yaml.stdout, /^apiVersion: migrations.coderanger.net\/v1beta1\nkind: Migrator\n/);
  t.match(yaml.stdout, /name: migrate-wait-myapp-migrations/);
  const why = runCli(source, ["explain", dir], root, env);
  t.equal(why.code, 0, why.stderr);
  t.match(why.stdout, /Migrator apps\/myapp-migrations \(migrator.yaml:1\)/);
  t.match(
    why.stdout,
    /gates Deployment apps\/myapp \(deployment.yaml:1\): init container migrate-wait-myapp-migrations waits for container app/,
  );
  t.match(why.stdout, /sync wave: \(none\) -> -1/);
  const params = runCli(source, ["parameters"], root, { ...env, DIGEST_MIGRATIONS_WAITER_IMAGE: "x/y:1" });
  t.equal(params.code, 0);
  const announced = JSON.parse(params.stdout) as { name: string; string?: string }[];
  t.equal(announced.find((a) => a.name === "waiter-image")?.string, "x/y:1");
});

// ---- error paths -------------------------------------------------------------------------------

function tree(files: Record<string, string | Uint8Array>): string {
  const dir = tempDir("dm-hostile-");
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

const deployment = (name: string, labels = `app: ${name}`): string =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\nspec:\n  selector:\n    matchLabels:\n      ${labels}\n  template:\n    metadata:\n      labels:\n        ${labels}\n    spec:\n      containers:\n        - name: app\n          image: app:latest\n`;
const migrator = (name: string, extra = ""): string =>
  `apiVersion: migrations.coderanger.net/v1beta1\nkind: Migrator\nmetadata:\n  name: ${name}\nspec:\n  selector:\n    matchLabels:\n      app: ${name}\n${extra}`;

function aliasBomb(): string {
  const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
  for (let i = 1; i < 12; i++) {
    const prev = String.fromCharCode(96 + i);
    const cur = String.fromCharCode(97 + i);
    lines.push(`${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(",")}]`);
  }
  return `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  ${lines.join("\n  ")}\n`;
}

interface ErrorCase {
  name: string;
  files?: Record<string, string | Uint8Array>;
  setup?: (dir: string) => void;
  args?: string[];
  env?: Record<string, string>;
  stderr: RegExp;
}

const outside = tree({ "secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: stolen\n" });

const errorCases: ErrorCase[] = [
  {
    name: "YAML syntax error names file and line",
    files: { "a.yaml": deployment("a") + "  bad: [\n" },
    stderr: /a\.yaml:18: /,
  },
  {
    name: "alias bomb",
    files: { "bomb.yaml": aliasBomb() },
    stderr: /bomb\.yaml:1: aliases expand this document to more than \d+ values/,
  },
  {
    name: "huge file",
    files: { "big.yaml": deployment("big") + `# ${"x".repeat(200_000)}\n` },
    env: paramEnv([{ name: "max-file-size", string: "64Ki" }]),
    stderr: /big\.yaml: file is \d+ bytes, over the limit of 65536 \(max-file-size\)/,
  },
  {
    name: "symlink outside the source",
    files: { "a.yaml": deployment("a") },
    setup: (dir) => symlinkSync(path.join(outside, "secret.yaml"), path.join(dir, "evil.yaml")),
    stderr: /evil\.yaml: symlink points outside the repository/,
  },
  {
    name: "duplicate objects name both files",
    files: { "a.yaml": deployment("a"), "sub/b.yaml": deployment("a") },
    stderr: /duplicate object Deployment ns\/a: defined in a\.yaml:1 and sub\/b\.yaml:1/,
  },
  {
    name: "Migrator that selects no workload",
    files: { "a.yaml": deployment("a"), "m.yaml": migrator("nobody") },
    stderr: /Migrator ns\/nobody \(m\.yaml:1\): selects no workload in namespace ns/,
  },
  {
    name: "Migrator naming a container the workload lacks",
    files: { "a.yaml": deployment("a"), "m.yaml": migrator("a", "  container: web\n") },
    stderr:
      /Migrator ns\/a \(m\.yaml:1\): Deployment ns\/a \(a\.yaml:1\): container "web" \(spec\.container\) is not in the pod template/,
  },
  {
    name: "Migrator with an empty command",
    files: { "a.yaml": deployment("a"), "m.yaml": migrator("a", "  command: []\n") },
    stderr: /Migrator ns\/a \(m\.yaml:1\): spec\.command: empty; the migration Job would run the image's entrypoint/,
  },
  {
    name: "Migrator with an invalid selector",
    files: {
      "a.yaml": deployment("a"),
      "m.yaml": migrator("a").replace(
        "matchLabels:\n      app: a",
        "matchExpressions:\n      - key: app\n        operator: Near",
      ),
    },
    stderr: /Migrator ns\/a \(m\.yaml:1\): spec\.selector/,
  },
  {
    name: "annotation command that does not parse",
    files: {
      "a.yaml": deployment("a").replace(
        "  name: a\n",
        '  name: a\n  annotations:\n    migrations.coderanger.net/command: "migrate \'oops"\n',
      ),
    },
    stderr: /Deployment ns\/a \(a\.yaml:1\): annotation migrations.coderanger.net\/command: unterminated ' quote/,
  },
  {
    name: "annotation Migrator clashing with a hand-written one",
    files: {
      "a.yaml": deployment("a").replace(
        "  name: a\n",
        "  name: a\n  annotations:\n    migrations.coderanger.net/command: migrate\n",
      ),
      "m.yaml": migrator("a-migrations").replace("app: a-migrations", "app: a"),
    },
    stderr: /asks for Migrator a-migrations, which m\.yaml:1 already defines/,
  },
  {
    name: "bad parameter",
    files: { "a.yaml": deployment("a") },
    env: paramEnv([{ name: "recurse", string: "maybe" }]),
    stderr: /parameter recurse: "maybe" is not true or false/,
  },
  {
    name: "broken ARGOCD_APP_PARAMETERS",
    files: {},
    env: { ARGOCD_APP_PARAMETERS: "{" },
    stderr: /ARGOCD_APP_PARAMETERS is not JSON/,
  },
  {
    name: "broken Helm chart",
    files: {
      "Chart.yaml": "apiVersion: v2\nname: x\nversion: 0.1.0\n",
      "templates/a.yaml": "{{ .Values.nope.deeper }}\n",
    },
    stderr: /`helm template \.` failed: exit 1: .*nil pointer|`helm template \.` failed: exit 1: Error/,
  },
  {
    name: "Helm values file outside the repository",
    files: { "Chart.yaml": "apiVersion: v2\nname: x\nversion: 0.1.0\n" },
    env: paramEnv([{ name: "helm-values-files", array: [path.join(outside, "secret.yaml")] }]),
    stderr: /helm-values-files: .*secret\.yaml: outside the repository/,
  },
  {
    name: "Helm chart with a symlink out of the repository",
    files: { "Chart.yaml": "apiVersion: v2\nname: x\nversion: 0.1.0\n", "templates/a.yaml": "" },
    setup: (dir) => symlinkSync(path.join(outside, "secret.yaml"), path.join(dir, "files.txt")),
    stderr: /files\.txt: symlink points outside the repository/,
  },
  {
    name: "Kustomize exec plugins never run",
    files: {
      "kustomization.yaml": "generators:\n  - gen.yaml\n",
      "gen.yaml":
        "apiVersion: example.com/v1\nkind: Pwn\nmetadata:\n  name: pwn\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: ./pwn.sh\n",
      "pwn.sh": '#!/bin/sh\ntouch "$(dirname "$0")/pwned"\n',
    },
    // Executable, so only the plugin's refusal to enable exec plugins keeps it from running.
    setup: (dir) => chmodSync(path.join(dir, "pwn.sh"), 0o755),
    stderr: /`kubectl kustomize \.` failed: exit 1: .*external plugins disabled; unable to load external plugin 'Pwn'/,
  },
  {
    name: "Kustomize loading a file outside its root",
    files: { "app/kustomization.yaml": "resources:\n  - ../outside.yaml\n", "outside.yaml": deployment("o") },
    setup: () => undefined,
    args: ["app"],
    stderr: /`kubectl kustomize \.` failed: exit 1: .*(security|restrict|outside|not in or below)/i,
  },
  { name: "unknown command", args: ["frobnicate"], files: {}, stderr: /unknown command 'frobnicate'/ },
  { name: "no command", args: [], files: {}, stderr: /no command given/ },
  {
    name: "render of a missing directory",
    args: ["render", "/nonexistent/dir"],
    files: {},
    stderr: /\/nonexistent\/dir: no such directory/,
  },
];

for (const c of errorCases) {
  t.test(`error: ${c.name}`, async (t) => {
    const dir = tree(c.files ?? {});
    c.setup?.(dir);
    const args = c.args ?? ["generate"];
    const cwd = args[0] === "app" ? path.join(dir, "app") : dir;
    const env = argoEnv({ name: "x", namespace: "ns", sourcePath: args[0] === "app" ? "app" : "" }, c.env);
    const r = runCli(source, args[0] === "app" ? ["generate"] : args, cwd, env);
    t.not(r.code, 0, "non-zero exit");
    t.equal(r.stdout, "", "nothing on stdout");
    t.match(r.stderr, /^digest-migrations: [^\n]+\n$/, "one line on stderr");
    t.match(r.stderr, c.stderr);
    if (c.name.startsWith("Kustomize exec")) t.notOk(existsSync(path.join(dir, "pwned")), "the plugin did not run");
  });
}

t.test("relaxed and skipped cases succeed", async (t) => {
  const env = argoEnv({ name: "x", namespace: "ns", sourcePath: "" });
  const unmatched = tree({ "m.yaml": migrator("nobody") });
  const allowed = runCli(source, ["generate"], unmatched, {
    ...env,
    ...paramEnv([{ name: "allow-unmatched-migrators", string: "true" }]),
  });
  t.equal(allowed.code, 0, allowed.stderr);
  t.match(allowed.stdout, /"name": "nobody"/);
  t.notMatch(allowed.stdout, /sync-wave/, "an unmatched Migrator keeps its annotations");

  const binary = tree({
    "a.yaml": deployment("a"),
    "logo.yaml": new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0, 0xff]),
    "logo.png": new Uint8Array([0x89, 0]),
  });
  const skipped = runCli(source, ["generate"], binary, env);
  t.equal(skipped.code, 0, skipped.stderr);
  t.match(skipped.stdout, /"name": "a"/);
});

t.test("waiter-token: from the Application, else the install's default, else off", async (t) => {
  const env = argoEnv({ name: "x", namespace: "ns", sourcePath: "" });
  const app = tree({ "a.yaml": deployment("a"), "m.yaml": migrator("a") });
  const off = runCli(source, ["generate"], app, env);
  t.equal(off.code, 0, off.stderr);
  t.notMatch(off.stdout, /--token-file|migrate-wait-token/, "off by default: the render is as before");
  const install = runCli(source, ["generate"], app, { ...env, DIGEST_MIGRATIONS_WAITER_TOKEN: "true" });
  t.match(install.stdout, /"--token-file",\s*"\/var\/run\/secrets\/digest-migrations\/token"/, "the install's default");
  t.match(install.stdout, /"audience": "digest-migrations"/);
  const appOff = runCli(source, ["generate"], app, {
    ...env,
    DIGEST_MIGRATIONS_WAITER_TOKEN: "true",
    ...paramEnv([{ name: "waiter-token", string: "false" }]),
  });
  t.notMatch(appOff.stdout, /--token-file/, "the Application's parameter wins");
  const bad = runCli(source, ["generate"], app, { ...env, ...paramEnv([{ name: "waiter-token", string: "yes" }]) });
  t.not(bad.code, 0);
  t.match(bad.stderr, /parameter waiter-token: "yes" is not true or false/);
});
