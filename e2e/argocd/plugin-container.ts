// The plugin's commands run inside the plugin image, as argocd-cmp-server runs them in the sidecar:
// as user 999, in the image's environment (its ENV: the install-time defaults of the parameters)
// plus the request's entries, in a copy of the repository under /tmp/_cmp_server/<id> (where
// cmpserver/plugin/plugin.go extracts the repository it receives), with no network. One buildah
// working container per test process serves every command (`buildah run` starts a fresh runc
// container in it each time).
import { randomBytes } from "node:crypto";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { execFileText, onExitSync } from "../kit/processes.ts";

export interface ContainerCommand {
  /** the repository's files on the host (mounted read-only) */
  repoDir: string;
  /** the application's path inside the repository ("" for its root) */
  appPath: string;
  argv: string[];
  /** entries added to the image's environment */
  env: Record<string, string>;
  timeoutMs: number;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const containers = new Map<string, Promise<string>>();

/** The working container of `image` for this process (created once, removed at exit). */
function workingContainer(image: string): Promise<string> {
  let c = containers.get(image);
  if (!c) {
    const name = `dm-plugin-${process.pid}-${randomBytes(3).toString("hex")}`;
    c = execFileText("buildah", ["from", "--pull=never", "--name", name, image]).then((out) => {
      // Synchronous: at exit only synchronous work runs.
      onExitSync(() => execFileSync("buildah", ["rm", name], { stdio: "ignore" }));
      return out.trim();
    });
    containers.set(image, c);
  }
  return c;
}

/** Runs `argv` in the plugin image with the repository mounted where the cmp-server extracts it. */
export async function runInPluginImage(image: string, cmd: ContainerCommand): Promise<CommandResult> {
  const container = await workingContainer(image);
  const root = `/tmp/_cmp_server/${randomBytes(8).toString("hex")}`;
  const cwd = path.posix.join(root, cmd.appPath);
  if (!fs.statSync(cmd.repoDir).isDirectory()) throw new Error(`${cmd.repoDir} is not a directory`);
  const args = [
    "run",
    "--network",
    "none",
    "--user",
    "999:999",
    "--workingdir",
    cwd,
    "-v",
    `${cmd.repoDir}:${root}:ro`,
    ...Object.entries(cmd.env).flatMap(([k, v]) => ["--env", `${k}=${v}`]),
    container,
    "--",
    ...cmd.argv,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("buildah", args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // The whole process group: buildah and the runtime it started.
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    }, cmd.timeoutMs);
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`buildah run in ${image}: ${e.message}`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({
        code,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        timedOut,
      });
    });
  });
}
