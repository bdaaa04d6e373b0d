// Containers as local processes. An image's content says what a command means (see
// registry.ts ImageContent); the process runs in the image's directory with the pod's
// environment, its stdout and stderr go to a log file per container attempt (like
// /var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log), and it runs in its own process group
// so stopping a container stops everything it spawned.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { constants as osConstants } from "node:os";
import path from "node:path";
import type { Container } from "@digest-migrations/shared";
import type { CommandContext, ImageContent, StoredImage } from "./registry.ts";
import { expand } from "./env.ts";

export type ResolvedCommand =
  { ok: true; argv: string[]; env: Record<string, string> } | { ok: false; message: string };

/**
 * The argv to run for `container` from `image`, Docker semantics: `command` replaces ENTRYPOINT
 * (and drops CMD), `args` replaces CMD; $(VAR) references expand against the container's env.
 * A first word the image does not provide is containerd's "executable file not found" start error.
 */
export function resolveCommand(
  image: StoredImage,
  container: Container,
  env: Record<string, string>,
  ctx: Omit<CommandContext, "args" | "env">,
): ResolvedCommand {
  const content = image.content;
  const words = container.command?.length
    ? [...container.command, ...(container.args ?? [])]
    : [...(content.entrypoint ?? []), ...(container.args ?? content.cmd ?? [])];
  const expanded = words.map((w) => expand(w, env));
  const [name, ...rest] = expanded;
  if (name === undefined) {
    return { ok: false, message: startErrorMessage("", "no command specified") };
  }
  const command = lookupCommand(content, name);
  if (!command) {
    return { ok: false, message: startErrorMessage(name, `exec: "${name}": executable file not found in $PATH`) };
  }
  if (typeof command === "function") {
    const built = command({ ...ctx, args: rest, env });
    return { ok: true, argv: built.argv, env: { ...env, ...built.env } };
  }
  return { ok: true, argv: [...command, ...rest], env };
}

function lookupCommand(content: ImageContent, name: string): ImageContent["commands"][string] | undefined {
  if (Object.hasOwn(content.commands, name)) return content.commands[name];
  const base = path.posix.basename(name);
  return Object.hasOwn(content.commands, base) ? content.commands[base] : undefined;
}

/** What containerd/runc report when a container's process cannot be started. */
export function startErrorMessage(_name: string, reason: string): string {
  return (
    "failed to create containerd task: failed to create shim task: OCI runtime create failed: " +
    `runc create failed: unable to start container process: ${reason}: unknown`
  );
}

/** The image's files on disk: a given directory, or files materialised once per digest. */
export function imageDirectory(image: StoredImage, imagesRoot: string): string {
  const files = image.content.files;
  if (typeof files === "string") return files;
  const dir = path.join(
    imagesRoot,
    createHash("sha256").update(`${image.repository}@${image.digest}`).digest("hex").slice(0, 24),
  );
  if (fs.existsSync(path.join(dir, ".complete"))) return dir;
  fs.mkdirSync(dir, { recursive: true });
  for (const [rel, text] of Object.entries(files ?? {})) {
    const target = path.resolve(dir, rel);
    if (!target.startsWith(dir + path.sep))
      throw new Error(`image ${image.repository}@${image.digest}: file path escapes the image: ${rel}`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, text);
  }
  fs.writeFileSync(path.join(dir, ".complete"), `${image.repository}@${image.digest}\n`);
  return dir;
}

export interface Exit {
  exitCode: number;
  signal: NodeJS.Signals | null;
}

export interface RunningProcess {
  pid: number;
  exited: Promise<Exit>;
  /** Signals the whole process group. */
  kill(signal: NodeJS.Signals): void;
}

/** Every process group started here, killed on exit so a crashed test leaves no strays. */
const live = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pid of live) killGroup(pid, "SIGKILL");
  });
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone — nothing left to signal.
  }
}

/** Starts `argv`; rejects with the spawn error if the executable cannot be started at all. */
export function launch(
  argv: string[],
  env: Record<string, string>,
  cwd: string,
  logFile: string,
): Promise<RunningProcess> {
  installExitHook();
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("empty argv"));
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const fd = fs.openSync(logFile, "a");
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, env, detached: true, stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    child.once("error", (err) => reject(err));
    child.once("spawn", () => {
      const pid = child.pid ?? -1;
      live.add(pid);
      const exited = new Promise<Exit>((res) => {
        child.once("exit", (code, signal) => {
          // The group may hold children of the container's main process: end them too.
          killGroup(pid, "SIGKILL");
          live.delete(pid);
          res({ exitCode: code ?? 128 + signalNumber(signal), signal });
        });
      });
      resolve({ pid, exited, kill: (signal) => killGroup(pid, signal) });
    });
  });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  if (signal === null) return 0;
  const n = (osConstants.signals as Record<string, number>)[signal];
  return typeof n === "number" ? n : 0;
}
