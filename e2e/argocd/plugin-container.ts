// The plugin sidecar as its image makes it: argocd-cmp-server's stand-in (cmp-server.ts) configured
// by the plugin.yaml inside the plugin image (/home/argocd/cmp-server/config/plugin.yaml, where
// Dockerfile.plugin puts it), with the image's own environment (its ENV: PATH, the install-time
// defaults of the parameters) plus the sidecar container's env from the shipped patch, running each
// command INSIDE the image: `buildah run` of one working container per test process, as user 999
// (the repo-server's argocd user), with no network, in the repository the cmp-server unpacked
// (mounted at the same path; owned by 999, as the real cmp-server, running as 999, leaves it).
import { randomBytes } from "node:crypto";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { execFileText, onExitSync } from "../kit/processes.ts";
import { CmpServer } from "./cmp-server.ts";
import type { ExecRequest, ExecResult, Executor } from "./exec.ts";
import { validatePluginConfig } from "./plugin-config.ts";
import { SIDECAR_PATCH, patchContainerEnv } from "./sidecar.ts";
import type { SidecarOptions } from "./sidecar.ts";
import { V3_5 } from "./versions.ts";

/** Where Dockerfile.plugin puts the plugin configuration (argocd-cmp-server's --config-dir-path). */
export const IMAGE_PLUGIN_CONFIG = "/home/argocd/cmp-server/config/plugin.yaml";
/** The user argocd-cmp-server runs as in the sidecar. */
const SIDECAR_USER = "999:999";

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

/** Runs a command in the image's working container; resolves with its output (never rejects on exit status). */
function buildahRun(
  container: string,
  argv: readonly string[],
  opts: { cwd?: string; env?: readonly string[]; mounts?: string[]; deadline?: number },
): Promise<ExecResult> {
  const args = [
    "run",
    "--network",
    "none",
    "--user",
    SIDECAR_USER,
    ...(opts.cwd ? ["--workingdir", opts.cwd] : []),
    ...(opts.mounts ?? []).flatMap((m) => ["-v", m]),
    ...(opts.env ?? []).flatMap((e) => ["--env", e]),
    container,
    "--",
    ...argv,
  ];
  return new Promise((resolve, reject) => {
    // Its own process group: at the deadline buildah and the runtime it started go together.
    const child = spawn("buildah", args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      opts.deadline === undefined
        ? undefined
        : setTimeout(
            () => {
              timedOut = true;
              if (child.pid) process.kill(-child.pid, "SIGKILL");
            },
            Math.max(0, opts.deadline - Date.now()),
          );
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`buildah run ${argv.join(" ")}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8").replace(/\n$/, ""),
        stderr: Buffer.concat(err).toString("utf8"),
        timedOut,
      });
    });
  });
}

/**
 * Runs the cmp-server's commands inside `image`. `workDir` is the directory the cmp-server stand-in
 * unpacks repositories under; each request's repository (the entry of `workDir` holding its cwd) is
 * handed to the sidecar's user and mounted at the same path.
 */
export function containerExecutor(image: string, workDir: string): Executor {
  return async (request: ExecRequest): Promise<ExecResult> => {
    const container = await workingContainer(image);
    const rel = path.relative(workDir, request.cwd);
    const top = rel.split(path.sep)[0];
    if (!top || rel.startsWith(".."))
      throw new Error(`${request.cwd} is not under the sidecar's work directory ${workDir}`);
    const repo = path.join(workDir, top);
    execFileSync("chown", ["-R", SIDECAR_USER, repo]);
    return buildahRun(container, request.argv, {
      cwd: request.cwd,
      env: request.env,
      mounts: [`${repo}:${repo}`],
      ...(request.deadline === undefined ? {} : { deadline: request.deadline }),
    });
  };
}

/** The image's configuration: its environment (ENV) and the plugin.yaml it carries. */
export async function imageSidecarConfig(image: string): Promise<{ env: Record<string, string>; pluginYaml: string }> {
  const inspect = JSON.parse(await execFileText("buildah", ["inspect", "--type", "image", image])) as {
    OCIv1?: { config?: { Env?: string[] } };
  };
  const env: Record<string, string> = {};
  for (const entry of inspect.OCIv1?.config?.Env ?? []) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  const cat = await buildahRun(await workingContainer(image), ["cat", IMAGE_PLUGIN_CONFIG], {});
  if (cat.code !== 0) throw new Error(`${image}: cannot read ${IMAGE_PLUGIN_CONFIG}: ${cat.stderr.trim()}`);
  return { env, pluginYaml: cat.stdout };
}

/** Work directories made here, removed when the process exits (a sidecar lives as long as its test file). */
const ownWorkDirs: string[] = [];
function ownWorkDir(): string {
  if (ownWorkDirs.length === 0) {
    process.once("exit", () => {
      for (const dir of ownWorkDirs) fs.rmSync(dir, { recursive: true, force: true });
    });
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-cmp-"));
  ownWorkDirs.push(dir);
  return dir;
}

/** The named sidecar, as the plugin image makes it (configuration and environment from the image). */
export async function imageSidecar(image: string, options: Omit<SidecarOptions, "executor"> = {}): Promise<CmpServer> {
  const { env, pluginYaml } = await imageSidecarConfig(image);
  const workDir = options.workDir ?? ownWorkDir();
  fs.chmodSync(workDir, 0o755);
  return new CmpServer({
    config: validatePluginConfig(parse(pluginYaml) as unknown, `${image}:${IMAGE_PLUGIN_CONFIG}`),
    version: options.version ?? V3_5,
    sidecarEnv: {
      // What Kubernetes adds to every container, then the image's ENV, then the sidecar's env.
      HOSTNAME: "argocd-repo-server-5c8d7f9b6d-x2x7q",
      KUBERNETES_SERVICE_HOST: "10.96.0.1",
      KUBERNETES_SERVICE_PORT: "443",
      KUBERNETES_PORT: "tcp://10.96.0.1:443",
      ...env,
      ...patchContainerEnv(SIDECAR_PATCH, "digest-migrations"),
      ...options.env,
    },
    executor: containerExecutor(image, workDir),
    workDir,
  });
}
