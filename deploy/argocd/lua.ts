// Runs the Argo CD health check and resource actions of this directory on a real Lua 5.1 interpreter
// (Debian's lua5.1; Argo CD embeds gopher-lua, which has Lua 5.1 semantics), inside harness.lua's copy of
// Argo CD's sandbox. The object is handed over as a Lua table literal, as Argo CD hands over the live
// object as a table (JSON numbers become Lua numbers, null becomes nil).
import { execFileSync } from "node:child_process";
import path from "node:path";

export const ARGOCD_DIR = import.meta.dirname;
export const HEALTH_LUA = path.join(ARGOCD_DIR, "health.lua");
export const DISCOVERY_LUA = path.join(ARGOCD_DIR, "actions", "discovery.lua");
export const HARNESS_LUA = path.join(ARGOCD_DIR, "harness.lua");

/** The Lua 5.1 interpreter: $LUA, else Debian's lua5.1 (scripts/setup-machine.sh installs it). */
export function luaBinary(): string {
  return process.env["LUA"] || "lua5.1";
}

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

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LUA_KEYWORDS = new Set(
  "and break do else elseif end false for function if in local nil not or repeat return then true until while".split(
    " ",
  ),
);

function luaString(s: string): string {
  // Byte by byte: Lua 5.1 strings are bytes; every byte outside printable ASCII is a decimal escape.
  let out = '"';
  for (const b of Buffer.from(s, "utf8")) {
    if (b === 0x22) out += '\\"';
    else if (b === 0x5c) out += "\\\\";
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\${b}`;
  }
  return out + '"';
}

/**
 * A Lua expression for a JSON value. Objects become tables with string keys, arrays sequences; null
 * becomes nil, which in a table means the key is absent — as in Argo CD, whose decoder maps null to nil.
 */
export function toLuaLiteral(value: unknown, where = "value"): string {
  if (value === null) return "nil";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new Error(`${where}: ${value} has no Lua literal`);
      return Object.is(value, -0) ? "0" : Number.isInteger(value) ? value.toFixed(0) : value.toPrecision(17);
    case "string":
      return luaString(value);
    case "object": {
      if (Array.isArray(value)) {
        return `{${value.map((v, i) => toLuaLiteral(v, `${where}[${i}]`)).join(", ")}}`;
      }
      const fields = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
        const key = IDENTIFIER.test(k) && !LUA_KEYWORDS.has(k) ? k : `[${luaString(k)}]`;
        return `${key} = ${toLuaLiteral(v, `${where}.${k}`)}`;
      });
      return `{${fields.join(", ")}}`;
    }
    case "undefined":
      return "nil";
    case "bigint":
    case "function":
    case "symbol":
      break;
  }
  throw new Error(`${where}: a ${typeof value} has no Lua literal`);
}

export interface RunOptions {
  /** Argo CD's `actionParams` global (parameters of an action). */
  actionParams?: Record<string, unknown>;
  /** The time os.time and os.date report; default: the real clock. */
  now?: Date;
}

/**
 * Runs one script with `obj` (and `actionParams`) as Argo CD would and returns what it returned, decoded
 * from the harness's JSON (an empty table comes back as []). Throws with the script's error message.
 */
export function runScript(script: string, obj: unknown, options: RunOptions = {}): unknown {
  const params = toLuaLiteral(options.actionParams ?? {}, "actionParams");
  const input = `return { obj = ${toLuaLiteral(obj, "obj")}, actionParams = ${params} }`;
  const env = { ...process.env };
  if (options.now !== undefined) env["HARNESS_NOW"] = String(Math.floor(options.now.getTime() / 1000));
  let stdout: string;
  try {
    stdout = execFileSync(luaBinary(), [HARNESS_LUA, script], { input, env, encoding: "utf8", stdio: "pipe" });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string; status?: number };
    if (e.code === "ENOENT") {
      throw new Error(`${luaBinary()} not found: install Debian's lua5.1 (scripts/setup-machine.sh does)`, {
        cause: error,
      });
    }
    // Lua's own messages start with the script's path and line.
    throw new Error((e.stderr ?? "").trim() || `${script}: ${e.message}`, { cause: error });
  }
  return JSON.parse(stdout) as unknown;
}

/** The health Argo CD would show for this Migrator. */
export function health(obj: unknown): HealthStatus {
  const result = runScript(HEALTH_LUA, obj);
  if (typeof result !== "object" || result === null || Array.isArray(result)) {
    throw new Error(`health.lua returned ${JSON.stringify(result)}, not a table with a status`);
  }
  return result as HealthStatus;
}

/** The actions Argo CD would offer for this Migrator, by name. */
export function discoverActions(obj: unknown): Record<string, DiscoveredAction> {
  const result = runScript(DISCOVERY_LUA, obj);
  // An empty Lua table is encoded as [], which Argo CD reads as "no actions".
  if (Array.isArray(result) && result.length === 0) return {};
  if (typeof result !== "object" || result === null || Array.isArray(result)) {
    throw new Error(`discovery.lua returned ${JSON.stringify(result)}, not a table of actions`);
  }
  return result as Record<string, DiscoveredAction>;
}

/** The object an action returns (Argo CD patches the live object with the difference). */
export function runAction(name: string, obj: unknown, options: RunOptions = {}): unknown {
  return runScript(actionLua(name), obj, options);
}
