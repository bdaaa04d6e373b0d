// The stand-in's own fidelity, piece by piece against what Argo CD's Go code does (see each module's
// header for the functions and versions read): Go's path matching, the repository tarball, the command
// runner's deadline and process-group kill, the environment a command gets, and the reading of its output.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { waitFor } from "../kit/wait.ts";
import { CmpServer } from "./cmp-server.ts";
import { cmdErrorText, envMap, exitText, localExecutor } from "./exec.ts";
import { BadPatternError, goGlob, goMatch, zglob } from "./globs.ts";
import { splitYamlToString, toObjects } from "./manifest-stream.ts";
import { validatePluginConfig } from "./plugin-config.ts";
import { RepoServer, envsubst, pluginParamEnvs } from "./repo-server.ts";
import { compressRepository, extractRepository } from "./tgz.ts";
import { track } from "./tracking.ts";
import type { Trackable } from "./tracking.ts";
import { V2_6, V3_0, V3_5 } from "./versions.ts";

const scratch = mkdtempSync(path.join(tmpdir(), "dm-stand-in-"));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
function tree(files: Record<string, string>): string {
  const dir = path.join(scratch, `tree-${dirs++}`);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

t.test("filepath.Match", async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ["*.yaml", "a.yaml", true],
    ["*.yaml", "dir/a.yaml", false], // * never crosses a separator
    [".git", ".git", true],
    [".git/*", ".git/config", true],
    [".git/*", ".git/refs/heads", false],
    ["secrets/*", "secrets/db.yaml", true],
    ["a?c", "abc", true],
    ["a?c", "a/c", false],
    ["[a-c]x", "bx", true],
    ["[^a-c]x", "bx", false],
    ["\\*", "*", true],
    ["*", "", true],
  ];
  for (const [pattern, name, want] of cases) t.equal(goMatch(pattern, name), want, `${pattern} ~ ${name}`);
  t.throws(() => goMatch("[", "x"), BadPatternError, "an unclosed class is ErrBadPattern");
  t.throws(() => goMatch("a\\", "a"), BadPatternError);
});

t.test("discover.fileName is filepath.Glob in the app's directory; find.glob is go-zglob", async (t) => {
  const dir = tree({
    "app/.digest-migrations.yaml": "",
    "app/sub/s1.yaml": "",
    "app/deep/er/Chart.yaml": "",
    "other/Chart.yaml": "",
  });
  symlinkSync(path.join(dir, "other/Chart.yaml"), path.join(dir, "app/Chart.yaml"));
  const app = path.join(dir, "app");
  t.same(goGlob(path.join(app, ".digest-migrations.yaml")), [path.join(app, ".digest-migrations.yaml")]);
  t.same(goGlob(path.join(app, "./sub/s*.yaml")), [path.join(app, "sub/s1.yaml")], "Join cleans ./");
  t.same(goGlob(path.join(app, "*.yml")), []);
  t.same(goGlob(path.join(app, "*/s1.yaml")), [path.join(app, "sub/s1.yaml")], "meta in a directory segment");
  t.same(goGlob(path.join(app, "Chart.yaml")), [path.join(app, "Chart.yaml")], "Glob reports a symlink (Lstat)");
  t.same(
    zglob(path.join(app, "**/Chart.yaml")),
    [path.join(app, "deep/er/Chart.yaml")],
    "** spans directories; symlinks never match",
  );
  t.same(zglob(path.join(app, "*.yaml")), [path.join(app, ".digest-migrations.yaml")], "* matches dot files too");
  t.same(zglob(path.join(app, "s?b/*.yaml")), [], "? is a literal character in go-zglob");
});

t.test("the repository tarball: Argo CD's exclusions, modes, symlinks and checks", async (t) => {
  const root = tree({
    ".git/config": "[core]",
    ".git/refs/heads/main": "abc",
    "deploy/app.yaml": "kind: X",
    "deploy/run.sh": "#!/bin/sh",
    "secrets/db.yaml": "password",
  });
  symlinkSync("app.yaml", path.join(root, "deploy/link.yaml"));
  const all = compressRepository(root);
  t.ok(all.entries.includes(".git/config"), "nothing is excluded by default (no --plugin-tar-exclude)");
  t.equal(all.entries[0], ".", "the root is the first entry");
  const some = compressRepository(root, [".git", "secrets/*"]);
  t.same(some.entries, [".", "deploy", "deploy/app.yaml", "deploy/link.yaml", "deploy/run.sh", "secrets"]);
  t.equal(some.filesWritten, 2);

  const dest = path.join(scratch, "unpacked");
  writeFileSync(path.join(root, "deploy/run.sh"), "#!/bin/sh", { mode: 0o755 });
  const again = compressRepository(root, [".git"]);
  extractRepository(dest, again.tgz, again.checksum);
  t.equal(
    readFileSync(path.join(dest, "deploy/link.yaml"), "utf8"),
    "kind: X",
    "a relative symlink inside the tree survives",
  );
  t.equal(statSync(path.join(dest, "deploy/run.sh")).mode & 0o777, 0o644, "files are 0644 unless preserveFileMode");
  t.throws(
    () => extractRepository(path.join(scratch, "x"), again.tgz, "0".repeat(64)),
    /file checksum validation error/,
  );

  const escaping = tree({ "a.yaml": "x" });
  symlinkSync("../../../../../../etc/passwd", path.join(escaping, "evil.yaml"));
  const evil = compressRepository(escaping);
  t.throws(
    () => extractRepository(path.join(scratch, "evil"), evil.tgz, evil.checksum),
    /illegal filepath in symlink/,
    "a symlink leading out of the tree is refused",
  );
  const absolute = tree({ "a.yaml": "x" });
  symlinkSync("/etc/passwd", path.join(absolute, "abs.yaml"));
  const abs = compressRepository(absolute);
  extractRepository(path.join(scratch, "abs"), abs.tgz, abs.checksum);
  t.equal(
    readlinkSync(path.join(scratch, "abs", "abs.yaml")),
    "etc/passwd",
    "an absolute symlink is joined to the tree and made relative (filepath.Join), so it cannot leave it",
  );
  const empty = path.join(scratch, "empty");
  mkdirSync(path.join(empty, "only-a-dir"), { recursive: true });
  t.throws(() => compressRepository(empty, []), /no files to send/);
  const long = tree({ [`${"d".repeat(60)}/${"f".repeat(60)}.yaml`]: "long" });
  const packed = compressRepository(long);
  extractRepository(path.join(scratch, "long"), packed.tgz, packed.checksum);
  t.equal(
    readFileSync(path.join(scratch, "long", `${"d".repeat(60)}/${"f".repeat(60)}.yaml`), "utf8"),
    "long",
    "names over 100 bytes (PAX)",
  );
});

t.test("runCommand's deadline: the command is killed, its process group is terminated, then killed", async (t) => {
  const dir = tree({ x: "" });
  const pidFile = path.join(dir, "grandchild.pid");
  const exec = localExecutor({ cleanupTimeoutMs: 200 });
  // A command that leaves a child behind which ignores SIGTERM and keeps stdout open.
  const script = `trap '' TERM; (trap '' TERM; echo $$ > /dev/null; sh -c 'echo $$ > ${pidFile}; exec tail -f /dev/null') & wait`;
  const started = Date.now();
  const result = await exec({
    argv: ["sh", "-c", script],
    cwd: dir,
    env: ["PATH=/usr/bin:/bin"],
    deadline: Date.now() + 500,
  });
  t.ok(result.timedOut, "the deadline passed");
  t.equal(result.signal, "SIGKILL", "the command itself is SIGKILLed (exec.CommandContext)");
  t.equal(exitText(result), "signal: killed");
  t.ok(Date.now() - started >= 650, "Wait returned only after the group's SIGKILL closed the pipes");
  const pid = Number(readFileSync(pidFile, "utf8"));
  // Gone, or a zombie: killed, not yet reaped by whoever inherited it.
  const running = (): boolean => {
    try {
      return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
      return false;
    }
  };
  await waitFor(() => (running() ? undefined : true), { what: `the grandchild ${pid} to be gone`, timeoutMs: 10_000 });
  t.pass("the grandchild that ignored SIGTERM is gone");
  t.equal(
    cmdErrorText(["sh", "-c", "exit 3"], "exit status 3", "  oops\n"),
    '`sh -c "exit 3"` failed exit status 3: oops',
    "CmdError quotes arguments holding spaces and trims stderr",
  );
  await t.rejects(exec({ argv: ["true"], cwd: dir, env: [], deadline: Date.now() - 1 }), /context deadline exceeded/);
});

t.test("the command's environment: the sidecar's, then the request's entries, empty ones per version", async (t) => {
  const config = validatePluginConfig({
    kind: "ConfigManagementPlugin",
    metadata: { name: "p" },
    spec: { generate: { command: ["true"] } },
  });
  const entries = [
    { name: "ARGOCD_APP_NAME", value: "shop" },
    { name: "ARGOCD_ENV_EMPTY", value: "" },
    { name: "HOME", value: "/from/request" },
    { name: "", value: "nameless" },
  ];
  for (const version of [V2_6, V3_0]) {
    const server = new CmpServer({
      config,
      version,
      sidecarEnv: { HOME: "/home/argocd", PATH: "/bin" },
      executor: localExecutor(),
    });
    const env = server.commandEnv(entries);
    t.same(env.slice(0, 2), ["HOME=/home/argocd", "PATH=/bin"], `${version.tag}: os.Environ() first`);
    t.equal(envMap(env)["HOME"], "/from/request", `${version.tag}: a request entry wins over the sidecar's`);
    t.equal(
      env.includes("ARGOCD_ENV_EMPTY="),
      version.keepEmptyEnvValues,
      `${version.tag}: empty values ${version.keepEmptyEnvValues ? "kept" : "dropped"}`,
    );
    t.notOk(
      env.some((e) => e.startsWith("=")),
      `${version.tag}: nameless entries dropped`,
    );
  }
});

t.test("getPluginParamEnvs and Parameters.Environ", async (t) => {
  const build = ["ARGOCD_APP_NAME=shop", "ARGOCD_APP_REVISION=abc123"];
  t.same(pluginParamEnvs(build, undefined), [], "no plugin section: no ARGOCD_ENV_, no parameters");
  t.same(pluginParamEnvs(build, {}), ["ARGOCD_APP_PARAMETERS=null"], "a plugin section without parameters");
  t.same(
    pluginParamEnvs(build, {
      env: [{ name: "REV", value: "r-$ARGOCD_APP_REVISION-${ARGOCD_APP_NAME}-$$-$NOPE" }],
      parameters: [
        { name: "helm-values-files", array: ["a.yaml", "b.yaml"] },
        { name: "helm-parameters", map: { "image.tag": "v1", a: "x" } },
        { name: "waiter-image", string: "w:1" },
        { name: "empty-array", array: [] },
      ],
    }),
    [
      "ARGOCD_ENV_REV=r-abc123-shop-$-",
      'ARGOCD_APP_PARAMETERS=[{"array":["a.yaml","b.yaml"],"name":"helm-values-files"},{"map":{"a":"x","image.tag":"v1"},"name":"helm-parameters"},{"name":"waiter-image","string":"w:1"},{"array":[],"name":"empty-array"}]',
      "PARAM_HELM_VALUES_FILES_0=a.yaml",
      "PARAM_HELM_VALUES_FILES_1=b.yaml",
      "PARAM_HELM_PARAMETERS_A=x",
      "PARAM_HELM_PARAMETERS_IMAGE_TAG=v1",
      "PARAM_WAITER_IMAGE=w:1",
    ],
  );
  t.equal(envsubst("${A}$B$", { A: "1", B: "2" }), "12$");
});

t.test("generate's output as each apimachinery reads it", async (t) => {
  const a = '{\n  "apiVersion": "v1",\n  "kind": "ConfigMap",\n  "metadata": {"name": "a"}\n}';
  const b = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}';
  const separated = `${a}\n---\n${b}\n`;
  t.throws(
    () => splitYamlToString(separated, "sniff"),
    /json: offset \d+: invalid character '-' in numeric literal/,
    "≤ v3.0: `{` first means a JSON stream",
  );
  t.equal(splitYamlToString(separated, "fallback").length, 2, "≥ v3.1: after one JSON object, the rest as YAML");
  for (const decoder of ["sniff", "fallback"] as const) {
    t.equal(
      splitYamlToString(`---\n${a}\n---\n${b}\n`, decoder).length,
      2,
      `${decoder}: a stream opened by --- is YAML`,
    );
    t.equal(splitYamlToString(`${a}\n${b}\n${a}`, decoder).length, 3, `${decoder}: concatenated JSON`);
    t.same(
      splitYamlToString("---\n# only a comment\n---\nnull\n---\n", decoder),
      [],
      `${decoder}: empty and null documents dropped`,
    );
    t.throws(() => toObjects('{"apiVersion": "v1", "metadata": {}}', decoder), /Object 'Kind' is missing/);
    t.throws(
      () => splitYamlToString("a: 1\na: 2\n", decoder),
      /already|duplicate|unique/i,
      `${decoder}: duplicate keys`,
    );
  }
  t.throws(
    () => splitYamlToString(`${a}\n${b}\n---\n${a}`, "fallback"),
    /invalid character/,
    "after two JSON objects there is no switch to YAML",
  );
  t.same(
    JSON.parse(splitYamlToString("---\na: yes\nb: 0777\n", "sniff")[0]!),
    { a: true, b: 511 },
    "YAML 1.1, as go-yaml v2",
  );
});

t.test("resource tracking", async (t) => {
  const cm: Trackable = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a" } };
  t.same(track(cm, "label", "shop", "apps").metadata?.labels, { "app.kubernetes.io/instance": "shop" });
  t.same(track(cm, "annotation", "shop", "apps").metadata?.annotations, {
    "argocd.argoproj.io/tracking-id": "shop:/ConfigMap:apps/a",
  });
  const spec = { template: { metadata: { labels: { app: "w" } } } };
  const dep: Trackable & { spec: typeof spec } = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "w", namespace: "x" },
    spec,
  };
  const tracked = track(dep, "annotation+label", "shop", "apps");
  t.equal(tracked.metadata?.annotations?.["argocd.argoproj.io/tracking-id"], "shop:apps/Deployment:x/w");
  t.same(tracked.metadata?.labels, { "app.kubernetes.io/instance": "shop" });
  t.same(tracked.spec.template.metadata.labels, { app: "w" }, "the pod template is left alone");
  const crd = { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", metadata: { name: "c" } };
  t.same(track(crd, "label", "shop", "apps"), crd, "CRDs are not tracked");
});

t.test("a find.command plugin runs in the app's directory with the request's environment", async (t) => {
  const root = tree({ "apps/a/main.cue": "", "apps/b/x.yaml": "" });
  const config = validatePluginConfig({
    kind: "ConfigManagementPlugin",
    metadata: { name: "cue" },
    spec: {
      generate: {
        command: [
          "sh",
          "-c",
          'echo \'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"\'$ARGOCD_APP_NAME\'"}}\'',
        ],
      },
      discover: { find: { command: ["sh", "-c", "ls *.cue 2>/dev/null"] } },
    },
  });
  const server = new CmpServer({
    config,
    version: V3_5,
    sidecarEnv: { PATH: "/usr/bin:/bin" },
    executor: localExecutor(),
  });
  const repo = new RepoServer({ version: V3_5, sidecars: [server] });
  const request = (p: string) => ({
    repoRoot: root,
    revision: "abc",
    source: { repoURL: "https://git.example/r.git", path: p, targetRevision: "main", plugin: {} },
    appName: "cue-app",
    namespace: "apps",
    kubeVersion: "1.20.2",
    apiVersions: ["v1"],
  });
  const r = await repo.generateManifests(request("apps/a"));
  t.same(
    r.manifests.map((m) => m.metadata?.name),
    ["cue-app"],
  );
  t.match(server.runs[0]?.cwd ?? "", /apps\/a$/, "find.command ran in the app's path");
  await t.rejects(repo.generateManifests(request("apps/b")), /could not find plugin supporting the given repository/);
  t.ok(existsSync(root), "the checkout is untouched");
});

t.test("an app path outside the unpacked repository is refused", async (t) => {
  const root = tree({ "a.yaml": "x" });
  const archive = compressRepository(root);
  const config = validatePluginConfig({
    kind: "ConfigManagementPlugin",
    metadata: { name: "p" },
    spec: { generate: { command: ["true"] } },
  });
  const server = new CmpServer({ config, version: V3_5, sidecarEnv: {}, executor: localExecutor() });
  const stream = {
    metadata: { appName: "x", appRelPath: "../../etc", env: [], checksum: archive.checksum, size: archive.tgz.length },
    tgz: archive.tgz,
  };
  await t.rejects(server.generateManifest(stream), /illegal appPath: out of workDir bound/);
  t.same(server.runs, [], "nothing ran");
});
