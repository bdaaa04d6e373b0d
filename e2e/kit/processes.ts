// Process supervision for the daemons the tests start (etcd, the Kubernetes components, containerd,
// the registry, PostgreSQL): each runs in its own process group with its output in a log file, is
// stopped with SIGTERM then SIGKILL, and is killed synchronously when the test process exits or
// gets a fatal signal. A detached reaper covers the case where the test process itself is killed
// (SIGKILL, OOM) before it can clean up.
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// ---------------------------------------------------------------------------------------------
// last-resort clean-up at exit

const exitCleanups = new Set<() => void>();
let hooksInstalled = false;

/** Runs `fn` synchronously when this process exits or receives SIGINT/SIGTERM/SIGHUP, unless the
 *  returned function is called first (the owner stopped cleanly). */
export function onExitSync(fn: () => void): () => void {
  installExitHooks();
  exitCleanups.add(fn);
  return () => exitCleanups.delete(fn);
}

function runExitCleanups(): void {
  for (const fn of [...exitCleanups]) {
    exitCleanups.delete(fn);
    try {
      fn();
    } catch {
      /* best effort while exiting */
    }
  }
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", runExitCleanups);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const handler = (): void => {
      runExitCleanups();
      // Restore the default disposition unless someone else handles this signal.
      process.removeListener(sig, handler);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

// ---------------------------------------------------------------------------------------------
// supervised daemons

export interface SpawnOptions {
  /** Output (stdout and stderr) is appended here, after a header line with the command. */
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** A daemon in its own process group, its output in a log file. */
export class Supervised {
  readonly name: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  exited: ProcessExit | null = null;
  readonly exitPromise: Promise<ProcessExit>;
  readonly #forget: () => void;

  constructor(name: string, cmd: string, args: string[], opts: SpawnOptions) {
    this.name = name;
    this.logFile = opts.logFile;
    const fd = fs.openSync(opts.logFile, "a");
    fs.writeSync(fd, `\n=== ${new Date().toISOString()} ${cmd} ${args.join(" ")}\n`);
    // detached: its own process group, so stop() can signal the whole group.
    this.child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ["ignore", fd, fd],
    });
    fs.closeSync(fd);
    // Do not keep the test process alive; the exit hook kills the group if stop() is never called.
    this.child.unref();
    this.#forget = onExitSync(() => this.killGroupSync("SIGKILL"));
    this.exitPromise = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exited = { code, signal };
        this.#forget();
        resolve(this.exited);
      });
      this.child.on("error", (err) => {
        this.exited = { code: null, signal: null };
        fs.appendFileSync(opts.logFile, `spawn error: ${err.message}\n`);
        this.#forget();
        resolve(this.exited);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  killGroupSync(signal: NodeJS.Signals): void {
    if (this.exited || this.pid === undefined) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      /* already gone */
    }
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.exited) {
      this.killGroupSync("SIGTERM");
      const timer = setTimeout(() => this.killGroupSync("SIGKILL"), graceMs);
      await this.exitPromise;
      clearTimeout(timer);
    }
    // Children that ignored SIGTERM in the same group.
    if (this.pid !== undefined) {
      try {
        process.kill(-this.pid, "SIGKILL");
      } catch {
        /* group empty */
      }
    }
  }

  /** The last lines of the log, for error messages. */
  tail(lines = 40): string {
    try {
      return fs.readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** Throws if the process has exited (for waits that must fail fast when a daemon dies). */
  assertRunning(what: string): void {
    if (this.exited)
      throw new ProcessExitedError(
        `${this.name} exited (${this.exited.signal ?? this.exited.code}) while waiting for ${what}:\n${this.tail(25)}`,
      );
  }

  addressInUse(): boolean {
    return /address already in use/i.test(this.tail(60));
  }
}

export class ProcessExitedError extends Error {
  override name = "ProcessExitedError";
}

/**
 * A detached shell that outlives this process: when this process disappears while `dir` still
 * exists (so nobody stopped what it started), it kills the process groups listed in `dir/pids`
 * and removes `dir`. It exits by itself once `dir` is gone.
 */
export function startReaper(dir: string): void {
  const script = `
    while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done
    if [ -f "$2/pids" ]; then
      for p in $(cat "$2/pids"); do kill -TERM -- "-$p" 2>/dev/null; done
      sleep 2
      for p in $(cat "$2/pids"); do kill -KILL -- "-$p" 2>/dev/null; done
      rm -rf "$2"
    fi`;
  const reaper = spawn("sh", ["-c", script, "dm-reaper", String(process.pid), dir], {
    detached: true,
    stdio: "ignore",
  });
  reaper.unref();
}

/** Records the process groups the reaper of `dir` kills (see {@link startReaper}). */
export function writePids(dir: string, procs: (Supervised | undefined)[]): void {
  const pids = procs.filter((p) => p && !p.exited && p.pid).map((p) => p?.pid);
  try {
    fs.writeFileSync(`${dir}/pids.tmp`, pids.join("\n") + "\n");
    fs.renameSync(`${dir}/pids.tmp`, `${dir}/pids`);
  } catch {
    /* dir gone */
  }
}

// ---------------------------------------------------------------------------------------------
// one-shot commands

/** Runs a command to completion, passing each output line to `log`; rejects with the last lines. */
export function runStreaming(
  cmd: string,
  args: string[],
  log: (line: string) => void,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], cwd: opts.cwd, env: opts.env ?? process.env });
    const tail: string[] = [];
    const onData = (chunk: Buffer, buf: { s: string }): void => {
      buf.s += chunk.toString("utf8");
      let nl: number;
      while ((nl = buf.s.indexOf("\n")) >= 0) {
        const line = buf.s.slice(0, nl);
        buf.s = buf.s.slice(nl + 1);
        tail.push(line);
        if (tail.length > 80) tail.shift();
        log(line);
      }
    };
    const out = { s: "" };
    const err = { s: "" };
    child.stdout.on("data", (c: Buffer) => onData(c, out));
    child.stderr.on("data", (c: Buffer) => onData(c, err));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      for (const rest of [out.s, err.s]) if (rest) log(rest);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${signal ?? code}):\n${tail.join("\n")}`));
    });
  });
}

/** Runs a command to completion and returns its stdout; rejects with its stderr. */
export function execFileText(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 0 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${cmd} ${args.join(" ")}: ${error.message.split("\n")[0]}\n${stderr}`.trim()));
        else resolve(stdout);
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Whether `file` is an executable regular file. */
export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
