// How argocd-cmp-server runs a plugin command (init, generate, discover.find.command), and the one seam
// through which the stand-in runs it. cmpserver/plugin/plugin.go runCommand, read in v2.6.15, v2.14.21
// and v3.5.1, does the same in every version:
//   - exec.CommandContext(ctx, command[0], command[1:]+args…) with Env = the environment given (for
//     duplicate names the last one wins, as os/exec dedups) and Dir = the application's path;
//   - its own process group (SysProcAttr Setpgid), so that on the deadline the whole group can go:
//     CommandContext kills the command itself (SIGKILL), a goroutine sends SIGTERM to the group and,
//     5 s later, SIGKILL to the group; Wait returns once every holder of stdout/stderr has gone;
//   - a failure is CmdError: "`<argv>` failed <exit status N | signal: killed>: <stderr, trimmed>";
//   - stdout is returned without its final newline.
//
// The executor below runs the command as a local process. Another executor (e.g. one that runs it inside
// the plugin's container image) only has to honour ExecRequest and return an ExecResult.
import { spawn } from "node:child_process";

export interface ExecRequest {
  /** command + args, as plugin.yaml gives them. */
  argv: readonly string[];
  /** The application's directory (inside the unpacked repository). */
  cwd: string;
  /** NAME=value entries in order; for a name given twice the later entry wins. */
  env: readonly string[];
  /** Milliseconds since the epoch when the request's context expires; none: no deadline. */
  deadline?: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The deadline passed while it ran (the group was signalled). */
  timedOut: boolean;
}

export type Executor = (request: ExecRequest) => Promise<ExecResult>;

export interface LocalExecutorOptions {
  /** Rewrites argv before it runs (e.g. image paths to their local copies); default: unchanged. */
  argv?: (argv: readonly string[]) => string[];
  /** Time between SIGTERM and SIGKILL to the group after the deadline; Argo CD's is 5 s. */
  cleanupTimeoutMs?: number;
}

/** The environment list as a map, later entries winning (os/exec dedupEnv). */
export function envMap(env: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of env) {
    const eq = entry.indexOf("=");
    if (eq <= 0) continue;
    out[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return out;
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

/** Runs commands as local processes, with runCommand's process group and deadline handling. */
export function localExecutor(options: LocalExecutorOptions = {}): Executor {
  const cleanupTimeoutMs = options.cleanupTimeoutMs ?? 5_000;
  return (request) =>
    new Promise((resolve, reject) => {
      const argv = options.argv ? options.argv(request.argv) : [...request.argv];
      const [file, ...args] = argv;
      if (file === undefined) {
        reject(new Error("Command is empty"));
        return;
      }
      if (request.deadline !== undefined && Date.now() >= request.deadline) {
        reject(new Error("context deadline exceeded"));
        return;
      }
      const child = spawn(file, args, {
        cwd: request.cwd,
        env: envMap(request.env),
        detached: true, // setpgid: the child leads a new process group
        stdio: ["ignore", "pipe", "pipe"],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (c: Buffer) => out.push(c));
      child.stderr.on("data", (c: Buffer) => err.push(c));
      let timedOut = false;
      let deadlineTimer: NodeJS.Timeout | undefined;
      let killTimer: NodeJS.Timeout | undefined;
      if (request.deadline !== undefined) {
        deadlineTimer = setTimeout(
          () => {
            timedOut = true;
            child.kill("SIGKILL"); // exec.CommandContext's own kill of the command
            signalGroup(child.pid, "SIGTERM");
            // As Argo CD's goroutine, the group's SIGKILL follows even when the command is gone already (a
            // member may ignore SIGTERM without holding the pipes); it does not keep this process alive.
            killTimer = setTimeout(() => signalGroup(child.pid, "SIGKILL"), cleanupTimeoutMs);
            killTimer.unref();
          },
          Math.max(0, request.deadline - Date.now()),
        );
      }
      child.on("error", (e) => {
        clearTimeout(deadlineTimer);
        clearTimeout(killTimer);
        reject(e);
      });
      // "close": the process exited and every holder of its stdout and stderr has closed them (cmd.Wait).
      child.on("close", (code, signal) => {
        clearTimeout(deadlineTimer);
        resolve({
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
          code,
          signal,
          timedOut,
        });
      });
    });
}

/** argoexec.GetCommandArgsToLog: arguments holding whitespace are quoted (strconv.Quote). */
export function argsToLog(argv: readonly string[]): string {
  return argv.map((a) => (/\s/u.test(a) ? JSON.stringify(a) : a)).join(" ");
}

/** The text of Go's *exec.ExitError for this result ("exit status 1", "signal: killed"). */
export function exitText(result: ExecResult): string {
  if (result.signal !== null) return `signal: ${SIGNAL_TEXT[result.signal] ?? result.signal}`;
  return `exit status ${result.code ?? -1}`;
}

// Go's syscall.Signal.String() for the signals a command usually dies of.
const SIGNAL_TEXT: Partial<Record<NodeJS.Signals, string>> = {
  SIGKILL: "killed",
  SIGTERM: "terminated",
  SIGINT: "interrupt",
  SIGSEGV: "segmentation fault",
  SIGABRT: "aborted",
  SIGPIPE: "broken pipe",
};

/** CmdError.Error(): "`<argv>` failed <cause>[: <stderr>]". */
export function cmdErrorText(argv: readonly string[], cause: string, stderr: string): string {
  const trimmed = stderr.trim();
  const base = `\`${argsToLog(argv)}\` failed ${cause}`;
  return trimmed === "" ? base : `${base}: ${trimmed}`;
}
