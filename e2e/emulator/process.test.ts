import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { imageDirectory, launch, resolveCommand } from "./process.ts";
import type { StoredImage } from "./registry.ts";

const script = "console.log(process.argv.slice(1).join(' '))";
const image: StoredImage = {
  repository: "registry.example/app",
  digest: "sha256:" + "a".repeat(64),
  content: {
    files: { "migrations/001.sql": "create table t();" },
    commands: {
      app: [process.execPath, "-e", script],
      built: (ctx) => ({ argv: ["/bin/echo", ctx.containerName, ...ctx.args], env: { EXTRA: "1" } }),
    },
    entrypoint: ["app"],
    cmd: ["default-arg"],
  },
};
const ctx = { imageDir: "/img", podName: "p", podNamespace: "ns", containerName: "c" };

t.test("resolveCommand: Docker ENTRYPOINT/CMD semantics and $(VAR) expansion", async (t) => {
  const cases: [string, { command?: string[]; args?: string[] }, string[] | RegExp][] = [
    ["defaults", {}, [process.execPath, "-e", script, "default-arg"]],
    ["args replace CMD", { args: ["x"] }, [process.execPath, "-e", script, "x"]],
    ["command drops CMD", { command: ["app"] }, [process.execPath, "-e", script]],
    ["basename match", { command: ["/usr/local/bin/app", "$(WHO)"] }, [process.execPath, "-e", script, "me"]],
    ["function command", { command: ["built"], args: ["z"] }, ["/bin/echo", "c", "z"]],
    ["unknown command", { command: ["nope"] }, /exec: "nope": executable file not found in \$PATH/],
  ];
  for (const [what, c, want] of cases) {
    const r = resolveCommand(image, { name: "c", ...c }, { WHO: "me" }, ctx);
    if (want instanceof RegExp) t.ok(!r.ok && want.test(r.message), what);
    else t.same(r.ok && r.argv, want, what);
  }
  const fn = resolveCommand(image, { name: "c", command: ["built"] }, { A: "b" }, ctx);
  t.same(fn.ok && fn.env, { A: "b", EXTRA: "1" });
});

t.test("imageDirectory materialises files once per digest", async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "dm-img-"));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = imageDirectory(image, root);
  t.equal(fs.readFileSync(path.join(dir, "migrations/001.sql"), "utf8"), "create table t();");
  t.equal(imageDirectory(image, root), dir);
  t.equal(imageDirectory({ ...image, content: { ...image.content, files: "/some/dir" } }, root), "/some/dir");
  t.throws(
    () =>
      imageDirectory(
        { ...image, digest: "sha256:" + "b".repeat(64), content: { commands: {}, files: { "../x": "" } } },
        root,
      ),
    /escapes/,
  );
});

t.test("launch runs a process with env and cwd, logs its output, reports exit and signals", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-proc-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const log = path.join(dir, "c", "0.log");
  const p = await launch(
    [
      process.execPath,
      "-e",
      "console.log(process.env.GREETING, process.cwd()); console.error('oops'); process.exit(3)",
    ],
    { GREETING: "hello" },
    dir,
    log,
  );
  t.same(await p.exited, { exitCode: 3, signal: null });
  const text = fs.readFileSync(log, "utf8");
  t.match(text, `hello ${fs.realpathSync(dir)}`);
  t.match(text, "oops");

  const sleeper = await launch(
    [process.execPath, "-e", "setInterval(() => {}, 1000)"],
    {},
    dir,
    path.join(dir, "s.log"),
  );
  sleeper.kill("SIGTERM");
  t.same(await sleeper.exited, { exitCode: 143, signal: "SIGTERM" });

  await t.rejects(launch(["/nonexistent/binary"], {}, dir, path.join(dir, "x.log")), { code: "ENOENT" });
});
