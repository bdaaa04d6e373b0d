import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { PluginError } from "../errors.ts";
import { readManifestFile, renderPlain } from "./plain.ts";
import { tempDir } from "../../test/temp.ts";

const cm = (name: string): string => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n`;

t.test("readManifestFile: what is read, skipped or refused", async (t) => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const cases: [string, string, Uint8Array, "ok" | "skip" | RegExp, number?][] = [
    ["multi-document yaml", "a.yaml", enc(`${cm("a")}---\n${cm("b")}---\n`), "ok", 2],
    ["json object", "a.json", enc('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}'), "ok", 1],
    [
      "a List is expanded",
      "l.yaml",
      enc(`apiVersion: v1\nkind: List\nitems:\n  - ${cm("x").replace(/\n/g, "\n    ")}`),
      "ok",
      1,
    ],
    ["values file", "values.yaml", enc("replicas: 3\n"), "skip"],
    ["package.json", "package.json", enc('{"name":"x"}'), "skip"],
    ["broken non-manifest yaml", "notes.yaml", enc("a: [\n"), "skip"],
    ["skip marker", "s.yaml", enc(`# +argocd:skip-file-rendering\n${cm("s")}`), "skip"],
    ["binary", "blob.yaml", new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 0xff]), "skip"],
    ["utf-8 BOM", "bom.yaml", new Uint8Array([0xef, 0xbb, 0xbf, ...enc(cm("bom"))]), "ok", 1],
    [
      "broken manifest names file and line",
      "bad.yaml",
      enc(`${cm("a")}---\n${cm("b")}  labels: [\n`),
      /^bad\.yaml:\d+: /,
    ],
    [
      "manifest without name",
      "noname.yaml",
      enc("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"),
      /^noname\.yaml:1: ConfigMap has no metadata.name/,
    ],
    [
      "JSON list",
      "list.json",
      enc('[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}]'),
      /^list\.json:1: a JSON file must hold one object/,
    ],
    [
      "broken JSON manifest",
      "b.json",
      enc('{\n"apiVersion": "v1",\n"kind": "ConfigMap",\n"metadata": {,}\n}'),
      /^b\.json:4: /,
    ],
    [
      "binary that looks like a manifest",
      "x.yaml",
      new Uint8Array([...enc(cm("x")), 0, 0xff]),
      /not a UTF-8 text file/,
    ],
    [
      "label that is not a string",
      "l2.yaml",
      enc(`${cm("x")}  labels:\n    a: 1\n`),
      /metadata.labels.a is not a string/,
    ],
  ];
  for (const [name, rel, bytes, expected, count] of cases) {
    if (expected instanceof RegExp) {
      const error = t.throws(() => readManifestFile(rel, bytes), name) as Error;
      t.ok(error instanceof PluginError, name);
      t.match(error.message, expected, name);
      continue;
    }
    const result = readManifestFile(rel, bytes);
    t.equal(result.ok, expected === "ok", name);
    if (result.ok) t.equal(result.manifests.length, count, name);
  }
});

function tree(files: Record<string, string>): string {
  const dir = tempDir("dm-plain-");
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

const base = { include: undefined, exclude: undefined, recurse: true, maxFileSize: 1 << 20, maxTotalSize: 1 << 22 };

t.test("walks recursively in path order, filters by include/exclude", async (t) => {
  const dir = tree({
    "b.yaml": cm("b"),
    "a/c.yml": cm("c"),
    "a/d.json": '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"d"}}',
    "x.txt": "hello",
  });
  const all = await renderPlain({ ...base, dir, boundary: dir });
  t.same(
    all.manifests.map((m) => `${m.origin.file}:${m.object.metadata.name}`),
    ["a/c.yml:c", "a/d.json:d", "b.yaml:b"],
  );
  const flat = await renderPlain({ ...base, dir, boundary: dir, recurse: false });
  t.same(
    flat.manifests.map((m) => m.object.metadata.name),
    ["b"],
  );
  const inc = await renderPlain({ ...base, dir, boundary: dir, include: "*.yml" });
  t.same(
    inc.manifests.map((m) => m.object.metadata.name),
    ["c"],
    "a pattern without / matches basenames anywhere",
  );
  const exc = await renderPlain({ ...base, dir, boundary: dir, exclude: "a/**" });
  t.same(
    exc.manifests.map((m) => m.object.metadata.name),
    ["b"],
  );
  const both = await renderPlain({ ...base, dir, boundary: dir, include: "{a/*.json,b.yaml}" });
  t.same(
    both.manifests.map((m) => m.object.metadata.name),
    ["d", "b"],
  );
});

t.test("symlinks: inside is followed, outside is refused, dangling and directories are skipped", async (t) => {
  const outside = tree({ "secret.yaml": cm("secret") });
  const repo = tree({ "app/real.yaml": cm("real"), "shared/common.yaml": cm("common") });
  const app = path.join(repo, "app");
  symlinkSync(path.join(repo, "shared/common.yaml"), path.join(app, "common.yaml"));
  symlinkSync(path.join(app, "missing.yaml"), path.join(app, "dangling.yaml"));
  symlinkSync(path.join(repo, "shared"), path.join(app, "linked-dir.yaml"));
  const ok = await renderPlain({ ...base, dir: app, boundary: repo });
  t.same(ok.manifests.map((m) => m.object.metadata.name).sort(), ["common", "real"]);
  t.same(ok.skipped.map((s) => s.rel).sort(), ["dangling.yaml", "linked-dir.yaml"]);
  // The same link is outside when the boundary is the application directory.
  await t.rejects(
    renderPlain({ ...base, dir: app, boundary: app }),
    /common\.yaml: symlink points outside the repository/,
  );
  symlinkSync(path.join(outside, "secret.yaml"), path.join(app, "evil.yaml"));
  await t.rejects(renderPlain({ ...base, dir: app, boundary: repo }), /evil\.yaml: symlink points outside/);
});

t.test("size limits are checked before reading", async (t) => {
  const dir = tree({ "big.yaml": cm("big") + `  annotations:\n    pad: "${"x".repeat(5000)}"\n`, "a.yaml": cm("a") });
  await t.rejects(
    renderPlain({ ...base, dir, boundary: dir, maxFileSize: 4096 }),
    /big\.yaml: file is \d+ bytes, over the limit of 4096 \(max-file-size\)/,
  );
  await t.rejects(
    renderPlain({ ...base, dir, boundary: dir, maxTotalSize: 5000 }),
    /over the limit of 5000 bytes \(max-total-size\)/,
  );
});
