// Runs the Argo CD health check and resource actions of this directory in gopher-lua, the Lua Argo CD
// embeds, opened the way Argo CD's util/lua opens it for scripts configured in argocd-cm (see
// gopher-lua-runner/main.go). The runner is built once from Debian's golang-github-yuin-gopher-lua-dev with
// Debian's Go, offline (GOPATH mode over /usr/share/gocode), and cached under
// ${XDG_CACHE_HOME:-~/.cache}/digest-migrations/gopher-lua-runner/<hash of its source and the Go version>/.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

export const ARGOCD_DIR = import.meta.dirname;
export const HEALTH_LUA = path.join(ARGOCD_DIR, "health.lua");
export const DISCOVERY_LUA = path.join(ARGOCD_DIR, "actions", "discovery.lua");
export const RUNNER_DIR = path.join(ARGOCD_DIR, "gopher-lua-runner");
/** Where Debian's golang-github-yuin-gopher-lua-dev puts the sources (scripts/setup-machine.sh installs it). */
export const GOPHER_LUA_GOPATH = "/usr/share/gocode";

export function actionLua(name: string): string {
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`invalid action name "${name}"`);
  return path.join(ARGOCD_DIR, "actions", name, "action.lua");
}

/** What Argo CD's health.HealthStatus holds. */
export interface HealthStatus {
  status: "Healthy" | "Progressing" | "Degraded" | "Suspended" | "Missing" | "Unknown";
  message?: string;
}

/** One entry of what discovery.lua returns, as Argo CD's ResourceAction reads it. */
export interface DiscoveredAction {
  disabled?: boolean;
  displayName?: string;
  iconClass?: string;
}

function cacheDir(): string {
  const base = process.env["XDG_CACHE_HOME"] || path.join(homedir(), ".cache");
  return path.join(base, "digest-migrations", "gopher-lua-runner");
}

let built: string | undefined;

/**
 * The runner binary, built on first use (atomically: a parallel test process either finds the finished
 * binary or builds its own copy and renames it into place).
 */
export function runnerBinary(): string {
  if (built !== undefined) return built;
  const source = readFileSync(path.join(RUNNER_DIR, "main.go"));
  const goEnv = { ...process.env, GO111MODULE: "off", GOPATH: GOPHER_LUA_GOPATH, GOFLAGS: "" };
  let goVersion: string;
  try {
    goVersion = execFileSync("go", ["version"], { encoding: "utf8", env: goEnv }).trim();
  } catch (error) {
    throw new Error("go not found: install Debian's golang-go (scripts/setup-machine.sh does)", { cause: error });
  }
  if (!existsSync(path.join(GOPHER_LUA_GOPATH, "src/github.com/yuin/gopher-lua/state.go"))) {
    throw new Error(
      `gopher-lua sources not found under ${GOPHER_LUA_GOPATH}: install golang-github-yuin-gopher-lua-dev (scripts/setup-machine.sh does)`,
    );
  }
  const hash = createHash("sha256").update(source).update(goVersion).digest("hex").slice(0, 16);
  const dir = path.join(cacheDir(), hash);
  const binary = path.join(dir, "gopher-lua-runner");
  if (!existsSync(binary)) {
    mkdirSync(dir, { recursive: true });
    const staging = `${binary}.tmp-${process.pid}`;
    const result = spawnSync("go", ["build", "-o", staging, "."], {
      cwd: RUNNER_DIR,
      env: { ...goEnv, GOCACHE: path.join(cacheDir(), "go-build") },
      encoding: "utf8",
    });
    if (result.status !== 0) {
      rmSync(staging, { force: true });
      throw new Error(`building ${RUNNER_DIR} failed: ${result.error?.message ?? result.stderr.trim()}`);
    }
    renameSync(staging, binary);
  }
  built = binary;
  return binary;
}

export type RunMode = "health" | "discovery" | "action" | "value";

export interface RunOptions {
  /** Argo CD's `actionParams` global (an action's parameters, as strings). */
  actionParams?: Record<string, string>;
  /** The time os.time and os.date report; default: the real clock. */
  now?: Date;
}

/** Runs a Lua script file on `obj` in the runner and returns what Argo CD would read from its result. */
export function runScript(file: string, obj: unknown, mode: RunMode = "value", options: RunOptions = {}): unknown {
  const request = {
    mode,
    script: readFileSync(file, "utf8"),
    name: path.relative(ARGOCD_DIR, file) || file,
    obj,
    actionParams: options.actionParams ?? {},
    ...(options.now === undefined ? {} : { now: Math.floor(options.now.getTime() / 1000) }),
  };
  const result = spawnSync(runnerBinary(), [], { input: JSON.stringify(request), encoding: "utf8" });
  if (result.status !== 0)
    throw new Error(`gopher-lua-runner failed: ${result.error?.message ?? result.stderr.trim()}`);
  const answer = JSON.parse(result.stdout) as { value?: unknown; error?: string };
  if (answer.error !== undefined) throw new Error(answer.error);
  return answer.value;
}

/** The health Argo CD would show for this Migrator. */
export function health(obj: unknown): HealthStatus {
  return runScript(HEALTH_LUA, obj, "health") as HealthStatus;
}

/** The actions Argo CD would offer for this Migrator, by name. */
export function discoverActions(obj: unknown): Record<string, DiscoveredAction> {
  const result = runScript(DISCOVERY_LUA, obj, "discovery");
  // An empty Lua table is encoded as [], which Argo CD reads as "no actions".
  if (Array.isArray(result) && result.length === 0) return {};
  if (typeof result !== "object" || result === null || Array.isArray(result)) {
    throw new Error(`discovery.lua returned ${JSON.stringify(result)}, not a table of actions`);
  }
  return result as Record<string, DiscoveredAction>;
}

/** The object an action returns (Argo CD patches the live object with the difference). */
export function runAction(name: string, obj: unknown, options: RunOptions = {}): unknown {
  return runScript(actionLua(name), obj, "action", options);
}
