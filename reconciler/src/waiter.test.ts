// The waiter CLI as a real process against a real HTTP server: the waiter API itself, backed by
// an in-memory ReleaseOracle.
import t from "tap";
import http from "node:http";
import https from "node:https";
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { createLogger } from "./log.ts";
import { FakeOracle, freePort, waitFor } from "./testing.ts";
import { createWaiterApi } from "./waiter-api.ts";
import { isoTime, parseWaiterArgs, pauseAfterAnswerMs, retryAfter, retryDelayMs, UsageError } from "./waiter.ts";

const WAITER = fileURLToPath(new URL("./waiter.ts", import.meta.url));
const DIGEST = `sha256:${"b".repeat(64)}`;
const UID = "0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3b";
const silent = createLogger({ level: "silent" });
/** A Node process may take seconds to start on a loaded machine. */
const STARTUP_MS = 30_000;
const POD_ENV = { POD_NAME: "web-1", POD_NAMESPACE: "shop", POD_UID: UID };

interface Run {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runWaiter(args: string[], env: Record<string, string> = POD_ENV): Run {
  const child = spawn(process.execPath, [WAITER, ...args], {
    env: { PATH: process.env["PATH"] ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    let newline: number;
    while ((newline = out.indexOf("\n")) >= 0) {
      lines.push(JSON.parse(out.slice(0, newline)) as Record<string, unknown>);
      out = out.slice(newline + 1);
    }
  });
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, stderr: () => err, exit };
}

async function startApi(t: { teardown(fn: () => unknown): void }, port = 0, maxTimeoutSeconds = 1) {
  const oracle = new FakeOracle();
  const api = createWaiterApi({ oracle, log: silent, maxTimeoutSeconds });
  const address = await api.listen(port, "127.0.0.1");
  t.teardown(() => api.close());
  return { oracle, api, url: `http://127.0.0.1:${address.port}` };
}

const messages = (run: Run) => run.lines.map((l) => String(l["msg"]));

t.test("exits 0 once released, logging one line per state change rather than per poll", async (t) => {
  const { oracle, url } = await startApi(t);
  oracle.set("web-1", { ready: false, reason: "Probing", message: "probe pod pulling on node-1" });
  const run = runWaiter(["--api", url, "--migrator", "web", "--container", "app"]);
  t.teardown(() => run.child.kill("SIGKILL"));
  await waitFor("the first waiting line", () => run.lines.length >= 2, STARTUP_MS);
  oracle.set("web-1", { ready: false, reason: "Running", message: "job web-abc running", digest: DIGEST });
  // The server's long-polls end every second: let several polls see the same state.
  const queries = oracle.queries.length;
  await waitFor("three more polls", () => oracle.queries.length >= queries + 3, STARTUP_MS);
  oracle.set("web-1", { ready: true, reason: "Migrated", message: "migrated by job web-abc", digest: DIGEST });
  const { code } = await run.exit;
  t.equal(code, 0);
  t.same(messages(run), [
    `asking ${url} whether this pod may start`,
    "waiting for migration (Probing: probe pod pulling on node-1)",
    `waiting for migration of ${DIGEST} (Running: job web-abc running)`,
    `released: ${DIGEST} is migrated (Migrated: migrated by job web-abc)`,
  ]);
  t.match(run.lines[2], { level: "info", migrator: "shop/web", pod: "shop/web-1", container: "app", digest: DIGEST });
  t.match(oracle.queries.at(-1), { namespace: "shop", pod: "web-1", podUID: UID, migrator: "web", container: "app" });
});

t.test("--token-file: the pod's token on every request, read afresh; a missing file is retried", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "dm-waiter-token-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "token");
  const seen: string[] = [];
  const reviewer = {
    review: async (token: string) => {
      seen.push(token);
      return token === "second"
        ? { namespace: "shop", serviceAccount: "web", pod: "web-1", podUID: UID }
        : { status: 401 as const, message: "token is expired" };
    },
  };
  const oracle = new FakeOracle();
  const api = createWaiterApi({ oracle, log: silent, maxTimeoutSeconds: 1, auth: { mode: "required", reviewer } });
  const address = await api.listen(0, "127.0.0.1");
  t.teardown(() => api.close());
  oracle.set("web-1", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  const run = runWaiter([
    "--api",
    `http://127.0.0.1:${address.port}`,
    "--migrator",
    "web",
    "--container",
    "app",
    "--max-backoff",
    "0.2",
    "--token-file",
    file,
  ]);
  t.teardown(() => run.child.kill("SIGKILL"));
  await waitFor("the unreadable token line", () => messages(run).some((m) => m.includes("--token-file")), STARTUP_MS);
  writeFileSync(file, "first\n");
  await waitFor("the refusal", () => messages(run).some((m) => m.includes("HTTP 401")), STARTUP_MS);
  writeFileSync(file, "second\n");
  const { code } = await run.exit;
  t.equal(code, 0, "released with the renewed token");
  t.same([...new Set(seen)], ["first", "second"], "the file's token, trimmed, read on every attempt");
  t.match(messages(run), [
    /^asking /,
    /^cannot read the pod's token \(--token-file\): .*ENOENT.*; retrying$/,
    /^waiter API answered HTTP 401: token is expired; retrying$/,
    /^released: /,
  ]);
});

t.test("retries through connection refused until the server appears", async (t) => {
  const port = await freePort();
  const run = runWaiter([
    "--api",
    `http://127.0.0.1:${port}/`,
    "--migrator",
    "web",
    "--container",
    "app",
    "--max-backoff",
    "0.2",
  ]);
  t.teardown(() => run.child.kill("SIGKILL"));
  await waitFor("the unreachable line", () => messages(run).some((m) => m.includes("ECONNREFUSED")), STARTUP_MS);
  // Then something on the port that drops every connection: the attempts go on (backoff capped at
  // 0.2 s) and are counted here, while the log says so once.
  let attempts = 0;
  const dropper = net.createServer((socket) => {
    attempts++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => dropper.listen(port, "127.0.0.1", resolve));
  await waitFor("five attempts against the dropping server", () => attempts >= 5, STARTUP_MS);
  await new Promise((resolve) => dropper.close(resolve));
  const { oracle } = await startApi(t, port);
  oracle.set("web-1", { ready: true, reason: "Migrated", message: "already migrated", digest: DIGEST });
  const { code } = await run.exit;
  t.equal(code, 0, "released once the server is up");
  t.equal(messages(run).filter((m) => m.includes("ECONNREFUSED")).length, 1, "the refusals are logged once");
  t.equal(messages(run).filter((m) => m.includes("ECONNRESET")).length, 1, "five dropped attempts, logged once");
  t.match(
    run.lines.find((l) => String(l["msg"]).includes("ECONNREFUSED")),
    { level: "warn", state: "error-ECONNREFUSED" },
  );
});

t.test("honours Retry-After on 429 and 503", async (t) => {
  const times: number[] = [];
  const server = http.createServer((_req, res) => {
    times.push(Date.now());
    if (times.length === 1) res.writeHead(429, { "retry-after": "1" }).end('{"error":"slow down"}');
    else if (times.length === 2) res.writeHead(503, { "retry-after": "1" }).end();
    else
      res
        .writeHead(200, { "content-type": "application/json" })
        .end('{"ready":true,"reason":"Migrated","message":"ok"}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const run = runWaiter([
    "--api",
    `http://127.0.0.1:${port}`,
    "--migrator",
    "web",
    "--container",
    "app",
    "--max-backoff",
    "0.1",
  ]);
  t.teardown(() => run.child.kill("SIGKILL"));
  t.equal((await run.exit).code, 0);
  t.equal(times.length, 3);
  t.ok(times[1]! - times[0]! >= 1000, `waited Retry-After after 429 (${times[1]! - times[0]!} ms)`);
  t.ok(times[2]! - times[1]! >= 1000, `waited Retry-After after 503 (${times[2]! - times[1]!} ms)`);
  t.same(
    messages(run).filter((m) => m.startsWith("waiter API answered")),
    ["waiter API answered HTTP 429: slow down; retrying", "waiter API answered HTTP 503; retrying"],
  );
});

t.test("https: the server's certificate checked against the trusted CAs, SNI for a host name", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "dm-waiter-tls-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [key, cert] = [path.join(dir, "key.pem"), path.join(dir, "cert.pem")];
  const subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"];
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"];
  execFileSync("openssl", ["req", "-x509", ...ec, ...subject, "-keyout", key, "-out", cert], { stdio: "ignore" });
  const names: unknown[] = [];
  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    names.push((req.socket as { servername?: unknown }).servername);
    res.writeHead(200, { "content-type": "application/json" }).end('{"ready":true,"reason":"Migrated","message":"ok"}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const flags = ["--migrator", "web", "--container", "app", "--max-backoff", "0.2"];
  const trusted = { ...POD_ENV, NODE_EXTRA_CA_CERTS: cert };
  for (const host of ["localhost", "127.0.0.1"]) {
    const run = runWaiter(["--api", `https://${host}:${port}`, ...flags], trusted);
    t.teardown(() => run.child.kill("SIGKILL"));
    t.equal((await run.exit).code, 0, `released over https://${host}`);
  }
  t.same(names, ["localhost", false], "SNI names the host, never an address");

  const untrusted = runWaiter(["--api", `https://localhost:${port}`, ...flags]);
  t.teardown(() => untrusted.child.kill("SIGKILL"));
  await waitFor("the refused certificate", () => untrusted.lines.length >= 2, STARTUP_MS);
  t.match(untrusted.lines[1], { level: "warn", state: "error-DEPTH_ZERO_SELF_SIGNED_CERT" });
  t.equal(names.length, 2, "no request sent to an untrusted server");
});

t.test("exits promptly on SIGTERM while a long-poll is held", async (t) => {
  const { api, url } = await startApi(t, 0, 60);
  const run = runWaiter(["--api", url, "--migrator", "web", "--container", "app"]);
  t.teardown(() => run.child.kill("SIGKILL"));
  await waitFor("a held long-poll", () => api.held === 1, STARTUP_MS);
  const started = Date.now();
  run.child.kill("SIGTERM");
  const { code } = await run.exit;
  t.equal(code, 143);
  t.ok(Date.now() - started < 5000, `exited promptly (${Date.now() - started} ms)`);
  t.equal(messages(run).at(-1), "terminated before release");
});

t.test("bad flags exit 2 with a message", async (t) => {
  const cases: { name: string; args: string[]; env?: Record<string, string>; expect: RegExp }[] = [
    {
      name: "missing --container",
      args: ["--api", "http://x", "--migrator", "web"],
      expect: /required option '--container <name>'/,
    },
    {
      name: "unknown flag",
      args: ["--api", "http://x", "--migrator", "w", "--container", "c", "--frobnicate"],
      expect: /unknown option '--frobnicate'/,
    },
    {
      name: "bad URL",
      args: ["--api", "not a url", "--migrator", "w", "--container", "c"],
      expect: /--api: invalid URL/,
    },
    {
      name: "non-http URL",
      args: ["--api", "ftp://x", "--migrator", "w", "--container", "c"],
      expect: /--api: expected an http\(s\) URL/,
    },
    {
      name: "bad container",
      args: ["--api", "http://x", "--migrator", "w", "--container", "App_1"],
      expect: /--container: must be a DNS-1123 label/,
    },
    {
      name: "no pod identity",
      args: ["--api", "http://x", "--migrator", "w", "--container", "c"],
      env: {},
      expect: /--namespace \(POD_NAMESPACE\): is required; --pod \(POD_NAME\): is required/,
    },
    {
      name: "bad poll timeout",
      args: ["--api", "http://x", "--migrator", "w", "--container", "c", "--poll-timeout", "soon"],
      expect: /--poll-timeout: expected whole seconds/,
    },
  ];
  for (const c of cases) {
    const run = runWaiter(c.args, c.env ?? POD_ENV);
    const { code } = await run.exit;
    t.equal(code, 2, `${c.name}: exit code`);
    t.match(run.stderr(), c.expect, `${c.name}: message`);
    t.same(run.lines, [], `${c.name}: nothing on stdout`);
  }
});

t.test("flags override the downward-API environment", (t) => {
  const settings = parseWaiterArgs(
    ["--api", "http://api:8443", "--migrator", "web", "--container", "app", "--pod", "other", "--namespace", "ns2"],
    POD_ENV,
  );
  t.not(settings, "exit");
  if (settings !== "exit")
    t.same(settings.query, { namespace: "ns2", pod: "other", podUID: UID, migrator: "web", container: "app" });
  try {
    parseWaiterArgs(["--api", "http://x", "--migrator", "w", "--container", "c", "extra"], POD_ENV);
    t.fail("excess arguments accepted");
  } catch (error) {
    t.ok(error instanceof UsageError, "excess arguments are a usage error");
    t.match((error as Error).message, /too many arguments/);
  }
  t.end();
});

t.test("log times are toISOString's", (t) => {
  for (const ms of [0, 1, 999, 951782400000, 1_767_225_599_999, Date.now()]) {
    t.equal(isoTime(new Date(ms)), new Date(ms).toISOString(), `at ${ms}`);
  }
  t.end();
});

t.test("--help prints the flags", async (t) => {
  const run = runWaiter(["--help"]);
  let out = "";
  run.child.stdout?.removeAllListeners("data");
  run.child.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const { code } = await run.exit;
  t.equal(code, 0);
  t.match(out, /^Usage: digest-migrations-waiter \[options\]/);
  t.match(out, /--api <url> +base URL of the reconciler's waiter API \(required\)/);
  t.match(out, /--poll-timeout <seconds> +long-poll length asked of the server \(default: 30\)/);
});

t.test("the pacing, as pure functions", async (t) => {
  t.equal(retryAfter("7"), 7);
  t.equal(retryAfter("99999"), 300, "capped");
  t.equal(retryAfter("soon"), undefined);
  t.equal(retryAfter(undefined), undefined);

  t.equal(pauseAfterAnswerMs(5000), 0, "a long-poll held long enough: no pause");
  const pause = pauseAfterAnswerMs(200);
  t.ok(pause >= 800 && pause <= 1050, `an early answer: the rest of a second, jittered (${pause})`);

  for (let failures = 0; failures < 30; failures++) {
    const delay = retryDelayMs(failures, 30_000);
    const backoff = Math.min(30_000, 500 * 2 ** Math.min(failures, 20));
    t.ok(delay >= backoff / 2 && delay <= backoff, `attempt ${failures}: within [backoff/2, backoff]`);
  }
  t.ok(retryDelayMs(0, 30_000, 5) >= 5000, "never shorter than Retry-After");
});
