// `npm start` as a user runs it: the demo process from start to exit, on its own control plane. It must
// tell the whole story (every step, the final table: one Job and one migration run per digest, none for
// the rollback), exit 0, and leave nothing behind — no control-plane directory, no API server and no
// PostgreSQL still listening.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import t from "tap";

const ROOT = path.resolve(import.meta.dirname, "../..");

function run(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, "e2e/demo/demo.ts")], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Does anything accept a TCP connection on 127.0.0.1:port? */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

t.test("npm start tells the story, exits 0 and cleans up", async (t) => {
  const { code, stdout, stderr } = await run();
  t.equal(code, 0, "exit 0", { stderr: stderr.slice(-3000), stdout: stdout.slice(-3000) });
  t.notMatch(stderr, /cleanup:|demo failed/, "no failure while telling or cleaning up");

  for (let step = 1; step <= 8; step++) t.match(stdout, new RegExp(`\\[${step}/8\\] `), `step ${step} is told`);
  t.match(stdout, /migration Job myapp-migrations-[0-9a-f]+ created for sha256:[0-9a-f]{12}/, "the Job is shown");
  t.match(stdout, /Migrator myapp-migrations: lastSuccessfulMigration = sha256:[0-9a-f]{12}/, "the record is shown");
  // build  digest  recorded  Jobs  migration runs  applied  app starts ok
  t.match(stdout, /^\s*v1\s+sha256:[0-9a-f]{12}\s+yes\s+1\s+1\s+0001\s+\d+\/\d+$/m, "v1: one Job, one run");
  t.match(stdout, /^\s*v2\s+sha256:[0-9a-f]{12}\s+yes\s+1\s+1\s+0002\s+\d+\/\d+$/m, "v2: one Job, one run");
  for (const row of stdout.matchAll(/^\s*v[12]\s+\S+\s+yes\s+1\s+1\s+\S+\s+(\d+)\/(\d+)$/gm)) {
    t.equal(row[1], row[2], "every app start succeeded (each ran against its own schema)");
  }
  t.match(stdout, /the rollback needed no migration/);
  t.match(stdout, /done\.$/m);

  const dir = /\(dir (\/\S+)\)/.exec(stdout)?.[1];
  const apiPort = /API server at https:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)?.[1];
  const pgPort = /PostgreSQL on 127\.0\.0\.1:(\d+)/.exec(stdout)?.[1];
  if (dir === undefined || apiPort === undefined || pgPort === undefined) {
    throw new Error(`the demo no longer prints its cluster directory and ports:\n${stdout.slice(0, 3000)}`);
  }
  t.notOk(existsSync(dir), `the control plane's directory ${dir} is removed`);
  t.notOk(await listening(Number(apiPort)), "no API server is left listening");
  t.notOk(await listening(Number(pgPort)), "no PostgreSQL is left listening");
});
