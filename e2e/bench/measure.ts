// Running a command as its own process and measuring it: wall-clock time from spawn to exit, and
// peak resident set size. Peak RSS comes from GNU time (`/usr/bin/time -f %M`, the kernel's
// ru_maxrss of the process as reaped by wait4: the largest of the process and the children it
// waited for, not their sum); without GNU time, /proc/<pid>/status VmHWM is polled every few
// milliseconds, which can miss growth in the last interval before exit.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const GNU_TIME = "/usr/bin/time";

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Keep stdout (for checking the output); otherwise only its size is counted. */
  keepStdout?: boolean;
  /** Called with the child's spawn time (performance.now()) once it is started. */
  onSpawn?: (at: number) => void;
}

export interface RunResult {
  wallMs: number;
  /** Peak resident set size, in kB. */
  peakRssKb: number;
  /** performance.now() when the process was reaped. */
  exitedAt: number;
  stdoutBytes: number;
  stdout: string;
}

export class CommandError extends Error {
  override name = "CommandError";
}

const timeDir = mkdtempSync(path.join(os.tmpdir(), "dm-bench-time-"));
process.on("exit", () => rmSync(timeDir, { recursive: true, force: true }));
let counter = 0;

/** Runs `file args` once; rejects with the command's stderr if it exits non-zero. */
export function measure(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const useTime = existsSync(GNU_TIME);
  const timeFile = path.join(timeDir, `${process.pid}-${counter++}.txt`);
  const [cmd, argv] = useTime ? [GNU_TIME, ["-f", "%M", "-o", timeFile, file, ...args]] : [file, [...args]];
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, argv, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    options.onSpawn?.(started);
    const chunks: Buffer[] = [];
    const errChunks: Buffer[] = [];
    let stdoutBytes = 0;
    let hwmKb = 0;
    const poll = useTime
      ? undefined
      : setInterval(() => {
          hwmKb = Math.max(hwmKb, vmHwmKb(child.pid));
        }, 5);
    child.stdout.on("data", (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (options.keepStdout) chunks.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => errChunks.push(chunk));
    child.on("error", (error) => {
      if (poll) clearInterval(poll);
      reject(new CommandError(`${file}: ${error.message}`));
    });
    child.on("close", (code, signal) => {
      const exitedAt = performance.now();
      if (poll) clearInterval(poll);
      const stderr = Buffer.concat(errChunks).toString("utf8").trim();
      if (code !== 0) {
        reject(new CommandError(`${file} ${args.join(" ")}: exit ${code ?? signal}: ${stderr.slice(-2000)}`));
        return;
      }
      let peakRssKb = hwmKb;
      if (useTime) {
        const text = readFileSync(timeFile, "utf8").trim().split("\n").pop() ?? "";
        rmSync(timeFile, { force: true });
        peakRssKb = Number(text);
        if (!Number.isFinite(peakRssKb)) {
          reject(new CommandError(`${GNU_TIME}: unexpected output ${JSON.stringify(text)}`));
          return;
        }
      }
      resolve({
        wallMs: exitedAt - started,
        peakRssKb,
        exitedAt,
        stdoutBytes,
        stdout: Buffer.concat(chunks).toString("utf8"),
      });
    });
  });
}

function vmHwmKb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] === undefined ? 0 : Number(m[1]);
  } catch {
    return 0; // the process has exited between two polls
  }
}

/** How peak RSS is measured on this machine, for the table footnotes. */
export function rssMethod(): string {
  return existsSync(GNU_TIME) ? "GNU time %M (ru_maxrss)" : "polled /proc/<pid>/status VmHWM (GNU time not installed)";
}
