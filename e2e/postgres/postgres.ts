// A throwaway PostgreSQL 15 server on loopback for tests: Debian's binaries, a fresh cluster in a
// temporary directory, trust authentication, a free TCP port on 127.0.0.1 and the unix socket in
// the same directory (so parallel test files never share /var/run/postgresql). PostgreSQL refuses
// to run as root, so when the tests run as root the server runs as the `postgres` user.
import { spawn, execFileSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { freePort } from "../kit/ports.ts";
import { waitFor } from "../kit/wait.ts";

export const PG_BIN = process.env.DM_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export interface Database {
  name: string;
  /** postgresql://postgres@127.0.0.1:<port>/<name> */
  url: string;
}

export interface Postgres {
  host: string;
  port: number;
  dir: string;
  /** Connection URL of database `name` (default "postgres"). */
  url(name?: string): string;
  /** A new, empty database with a unique name. */
  createDatabase(prefix?: string): Promise<Database>;
  /** Runs a query in database `name` over a short-lived connection. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(name: string, sql: string, params?: unknown[]): Promise<R[]>;
  stop(): Promise<void>;
}

interface RunAs {
  uid?: number;
  gid?: number;
}

function runAs(): RunAs {
  if (process.getuid?.() !== 0) return {};
  const line = fs
    .readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (!uid || !gid) throw new Error("running as root needs a `postgres` user (Debian's postgresql package creates it)");
  return { uid: Number(uid), gid: Number(gid) };
}

export interface StartPostgresOptions {
  log?: (msg: string) => void;
  /** Startup deadline (default 60 s). */
  timeoutMs?: number;
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<Postgres> {
  const initdb = path.join(PG_BIN, "initdb");
  if (!fs.existsSync(initdb))
    throw new Error(`PostgreSQL not found: ${initdb} (install Debian's postgresql, or set DM_PG_BIN)`);
  const user = runAs();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-pg-"));
  const data = path.join(dir, "data");
  const logFile = path.join(dir, "postgres.log");
  if (user.uid !== undefined) fs.chownSync(dir, user.uid, user.gid ?? user.uid);
  try {
    execFileSync(initdb, ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"], {
      ...user,
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb in ${data} failed: ${e.stderr?.toString().trim() || e.message}`, { cause: err });
  }

  let server: { child: ChildProcess; port: number } | undefined;
  let lastError = "";
  for (let attempt = 0; attempt < 5 && !server; attempt++) {
    const port = await freePort();
    const log = fs.openSync(logFile, "a");
    const child = spawn(
      path.join(PG_BIN, "postgres"),
      [
        "-D",
        data,
        "-p",
        String(port),
        "-k",
        dir,
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
      ],
      { ...user, cwd: dir, stdio: ["ignore", log, log] },
    );
    fs.closeSync(log);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const ready = waitFor(() => ping(port), {
      what: `PostgreSQL on 127.0.0.1:${port}`,
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
    const outcome = await Promise.race([ready.then(() => "ready" as const), exited.then(() => "exited" as const)]);
    if (outcome === "ready") server = { child, port };
    else {
      ready.catch(() => undefined);
      lastError = fs.readFileSync(logFile, "utf8").trim().split("\n").slice(-5).join("\n");
      opts.log?.(`postgres: port ${port} start failed, retrying: ${lastError}`);
    }
  }
  if (!server) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${lastError}`);
  }
  const { child, port } = server;
  const stopOnExit = (): void => void child.kill("SIGKILL");
  process.on("exit", stopOnExit);
  opts.log?.(`postgres: listening on 127.0.0.1:${port} (data ${data})`);

  let stopped: Promise<void> | undefined;
  return {
    ...connectPostgres({ host: "127.0.0.1", port, dir }),
    stop(): Promise<void> {
      stopped ??= (async () => {
        process.off("exit", stopOnExit);
        if (child.exitCode === null && child.signalCode === null) {
          const gone = new Promise((resolve) => child.once("exit", resolve));
          child.kill("SIGINT"); // fast shutdown
          const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
          await gone;
          clearTimeout(timer);
        }
        fs.rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

async function ping(port: number): Promise<boolean> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port,
    user: "postgres",
    database: "postgres",
    connectionTimeoutMillis: 2_000,
  });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Where a running server listens: enough for another process (a test file) to use it. */
export interface PostgresAddress {
  host: string;
  port: number;
  dir: string;
}

/** A server started elsewhere (by the test run's world): databases and queries, but no stop(). */
export function connectPostgres(address: PostgresAddress): Omit<Postgres, "stop"> {
  const { host, port, dir } = address;
  const url = (name = "postgres"): string => `postgresql://postgres@${host}:${port}/${name}`;
  const query = async <R extends pg.QueryResultRow>(name: string, sql: string, params?: unknown[]): Promise<R[]> => {
    const client = new pg.Client({ connectionString: url(name) });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  };
  return {
    host,
    port,
    dir,
    url,
    query,
    async createDatabase(prefix = "t"): Promise<Database> {
      const name = `${prefix
        .toLowerCase()
        .replace(/[^a-z0-9_]/g, "_")
        .slice(0, 40)}_${randomBytes(4).toString("hex")}`;
      await query("postgres", `CREATE DATABASE "${name}"`);
      return { name, url: url(name) };
    },
  };
}
