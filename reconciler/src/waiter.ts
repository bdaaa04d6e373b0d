// The waiter: the command of the init container the plugin injects into every gated pod
// (`digest-migrations-waiter --api URL --migrator NAME --container NAME`, pod identity from the
// downward API in POD_NAME / POD_NAMESPACE / POD_UID). It long-polls the reconciler's waiter API
// and exits 0 once the pod's digest is migrated, so the kubelet goes on to start the app
// containers. With `--token-file` (waiter authentication) every request carries the pod's projected
// service-account token, read afresh each time (the kubelet renews the file before the token expires). It never gives up on its own: connection errors, 5xx and 429 are retried forever
// with capped, jittered exponential backoff (honouring Retry-After). It exits non-zero only on
// bad flags (2) or when terminated (143), and logs one JSON line per state change, not per poll.
//
// Kept small (bundled to reconciler/dist/waiter.mjs, ~14 kB, no dependency but the names it shares
// with the server): the init container runs under a 64Mi memory limit, and its peak RSS is measured
// against a bare `node -e 0` (e2e/bench). Its flags are read with util.parseArgs (flags.ts; commander
// and the node:child_process it loads cost ~6 MB), it speaks HTTP with node:http obtained through
// process.getBuiltinModule (an ESM `import` of a built-in costs more resident memory, undici with its
// WebAssembly HTTP parser ~30 MB more), and node:https is loaded only for an https:// API URL.
import type { Agent, ClientRequest, IncomingMessage, RequestOptions } from "node:http";
import { WAITER_COMMAND, parseAnswer, waitQueryErrors, waitUrl } from "@digest-migrations/shared";
import type { WaitAnswer, WaitQuery } from "@digest-migrations/shared";
import { pause } from "./pause.ts";
import { UsageError, settingsOrExit } from "./cli.ts";
import { parseFlags } from "./flags.ts";
import type { Flags } from "./flags.ts";

export { EXIT_USAGE, UsageError } from "./cli.ts";

export const EXIT_RELEASED = 0;
/** 128 + SIGTERM, as a shell reports a process ended by the signal. */
export const EXIT_TERMINATED = 143;

export interface WaiterSettings {
  /** Base URL of the waiter API. */
  api: URL;
  query: WaitQuery;
  /** Long-poll length asked of the server (seconds). */
  pollTimeoutSeconds: number;
  /** Backoff cap between failed attempts (seconds). */
  maxBackoffSeconds: number;
  /** The pod's projected service-account token, sent as `Authorization: Bearer` (waiter authentication). */
  tokenFile?: string;
}

const DESCRIPTION = "Waits until the reconciler has migrated this pod's image digest, then exits 0.";
const FLAGS = {
  api: { value: "<url>", help: "base URL of the reconciler's waiter API", required: true },
  migrator: { value: "<name>", help: "the Migrator gating this pod", required: true },
  container: { value: "<name>", help: "the gated application container", required: true },
  pod: { value: "<name>", help: "pod name (default: $POD_NAME)" },
  namespace: { value: "<name>", help: "pod namespace (default: $POD_NAMESPACE)" },
  "pod-uid": { value: "<uid>", help: "pod metadata.uid (default: $POD_UID)" },
  "poll-timeout": { value: "<seconds>", help: "long-poll length asked of the server", default: "30" },
  "max-backoff": { value: "<seconds>", help: "longest wait between failed attempts", default: "30" },
  "token-file": {
    value: "<path>",
    help: "send this file's token (the pod's projected service-account token) with every request",
  },
} satisfies Flags;

/** Parses argv (without node and script) and env into settings; throws UsageError on bad input. */
export function parseWaiterArgs(argv: string[], env: NodeJS.ProcessEnv): WaiterSettings | "exit" {
  const o = parseFlags(WAITER_COMMAND, DESCRIPTION, FLAGS, argv);
  if (o === "exit") return "exit"; // --help
  let api: URL;
  try {
    api = new URL(o["api"] ?? "");
  } catch {
    throw new UsageError(`--api: invalid URL "${o["api"]}"`);
  }
  if (api.protocol !== "http:" && api.protocol !== "https:")
    throw new UsageError(`--api: expected an http(s) URL, got "${o["api"]}"`);
  // An empty flag or variable counts as missing (the downward API gives "" for an absent field).
  const pick = (flag: string | undefined, variable: string | undefined): string | undefined =>
    flag || variable || undefined;
  const given = {
    namespace: pick(o["namespace"], env["POD_NAMESPACE"]),
    pod: pick(o["pod"], env["POD_NAME"]),
    podUID: pick(o["pod-uid"], env["POD_UID"]),
    migrator: pick(o["migrator"], undefined),
    container: pick(o["container"], undefined),
  };
  const problems = waitQueryErrors(given).map((p) =>
    p
      .replace(/^namespace:/, "--namespace (POD_NAMESPACE):")
      .replace(/^pod:/, "--pod (POD_NAME):")
      .replace(/^podUID:/, "--pod-uid (POD_UID):")
      .replace(/^(migrator|container):/, "--$1:"),
  );
  const query: WaitQuery = {
    namespace: given.namespace ?? "",
    pod: given.pod ?? "",
    migrator: given.migrator ?? "",
    container: given.container ?? "",
  };
  if (given.podUID) query.podUID = given.podUID;
  const pollTimeoutSeconds = Number(o["poll-timeout"]);
  const maxBackoffSeconds = Number(o["max-backoff"]);
  if (!Number.isInteger(pollTimeoutSeconds) || pollTimeoutSeconds < 0 || pollTimeoutSeconds > 3600)
    problems.push(`--poll-timeout: expected whole seconds between 0 and 3600, got "${o["poll-timeout"]}"`);
  if (!(maxBackoffSeconds > 0 && maxBackoffSeconds <= 3600))
    problems.push(`--max-backoff: expected seconds between 0 and 3600, got "${o["max-backoff"]}"`);
  if (o["token-file"] === "") problems.push("--token-file: empty path");
  if (problems.length > 0) throw new UsageError(problems.join("; "));
  const settings: WaiterSettings = { api, query, pollTimeoutSeconds, maxBackoffSeconds };
  if (o["token-file"] !== undefined) settings.tokenFile = o["token-file"];
  return settings;
}

/**
 * `date.toISOString()`, spelled out from its UTC fields: on Node 24 the first toISOString() alone
 * costs the waiter ~1 MB of resident memory (V8 code it touches nowhere else), these getters ~0.2 MB.
 */
export function isoTime(date: Date): string {
  const pad = (n: number, width = 2): string => String(n).padStart(width, "0");
  const day = `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
  const time = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
  return `${day}T${time}.${pad(date.getUTCMilliseconds(), 3)}Z`;
}

/** Where the waiter writes its JSON lines; injectable for tests. */
export type LineWriter = (line: string) => void;

type Outcome =
  | { kind: "answer"; answer: WaitAnswer }
  | { kind: "retry"; state: string; message: string; retryAfterSeconds?: number };

const BASE_BACKOFF_MS = 500;
/** A not-ready answer that came back this fast is followed by a pause, so a server answering early cannot cause a hot loop. */
const MIN_POLL_INTERVAL_MS = 1000;

/** The pause after a not-ready answer that took `elapsedMs` (0 when the long-poll was held long enough). */
export function pauseAfterAnswerMs(elapsedMs: number): number {
  return elapsedMs < MIN_POLL_INTERVAL_MS ? MIN_POLL_INTERVAL_MS - elapsedMs + Math.random() * 250 : 0;
}

/**
 * The wait before the next attempt after `failures` failed ones: capped exponential backoff with
 * "equal jitter" (half fixed, half random, so waiters restarted together spread out), and never
 * shorter than the server's Retry-After.
 */
export function retryDelayMs(failures: number, maxBackoffMs: number, retryAfterSeconds?: number): number {
  const backoff = Math.min(maxBackoffMs, BASE_BACKOFF_MS * 2 ** Math.min(failures, 20));
  const delay = backoff / 2 + Math.random() * (backoff / 2);
  return retryAfterSeconds === undefined ? delay : Math.max(delay, retryAfterSeconds * 1000 + Math.random() * 250);
}

/** Polls until released (resolves EXIT_RELEASED) or `signal` aborts (resolves EXIT_TERMINATED). */
export async function runWaiter(settings: WaiterSettings, signal: AbortSignal, write: LineWriter): Promise<number> {
  const { query } = settings;
  const url = waitUrl(settings.api, query, settings.pollTimeoutSeconds);

  const fields = {
    migrator: `${query.namespace}/${query.migrator}`,
    pod: `${query.namespace}/${query.pod}`,
    container: query.container,
  };
  const emit = (level: "info" | "warn", msg: string, extra: Record<string, unknown> = {}): void =>
    write(JSON.stringify({ level, time: isoTime(new Date()), msg, ...fields, ...extra }));

  let lastState = "";
  let failures = 0;
  emit("info", `asking ${settings.api.origin} whether this pod may start`);
  while (!signal.aborted) {
    const started = Date.now();
    const outcome = await poll(url, settings.pollTimeoutSeconds, signal, settings.tokenFile);
    if (signal.aborted) break;
    if (outcome.kind === "answer") {
      failures = 0;
      const { answer } = outcome;
      const extra: Record<string, unknown> = { reason: answer.reason };
      if (answer.digest) extra["digest"] = answer.digest;
      if (answer.ready) {
        emit(
          "info",
          `released: ${answer.digest ? `${answer.digest} is migrated` : "no migration needed"} (${answer.reason}: ${answer.message})`,
          extra,
        );
        return EXIT_RELEASED;
      }
      const state = JSON.stringify([answer.reason, answer.message, answer.digest]);
      if (state !== lastState) {
        emit(
          "info",
          `waiting for migration${answer.digest ? ` of ${answer.digest}` : ""} (${answer.reason}: ${answer.message})`,
          extra,
        );
        lastState = state;
      }
      const wait = pauseAfterAnswerMs(Date.now() - started);
      if (wait > 0) await pause(wait, signal);
      continue;
    }
    if (outcome.state !== lastState) {
      emit("warn", `${outcome.message}; retrying`, { state: outcome.state });
      lastState = outcome.state;
    }
    const delay = retryDelayMs(failures, settings.maxBackoffSeconds * 1000, outcome.retryAfterSeconds);
    failures++;
    await pause(delay, signal);
  }
  emit("info", "terminated before release");
  return EXIT_TERMINATED;
}

interface HttpModule {
  get(url: URL, options: RequestOptions, callback: (res: IncomingMessage) => void): ClientRequest;
  Agent: new (options: { keepAlive: boolean; maxSockets: number }) => Agent;
}

function httpModule(protocol: string): HttpModule {
  return protocol === "https:" ? process.getBuiltinModule("node:https") : process.getBuiltinModule("node:http");
}

/** Longest Retry-After honoured, so a confused server cannot park a waiter for hours. */
const RETRY_AFTER_MAX_SECONDS = 300;

/** A Retry-After header (seconds or an HTTP date) as seconds, at most RETRY_AFTER_MAX_SECONDS. */
export function retryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(RETRY_AFTER_MAX_SECONDS, Math.max(0, seconds));
}

/** One GET with Node's own HTTP client. */
function get(
  url: URL,
  timeoutMs: number,
  signal: AbortSignal,
  headers: Record<string, string>,
): Promise<{ status: number; retryAfter: string | undefined; text: string }> {
  return new Promise((resolve, reject) => {
    const options = { signal, timeout: timeoutMs, agent: keepAlive(url), headers };
    const req = httpModule(url.protocol).get(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        // An answer is a few hundred bytes; anything huge is not our server.
        if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(chunk);
      });
      res.on("end", () => {
        const header = res.headers["retry-after"];
        resolve({ status: res.statusCode ?? 0, retryAfter: header, text: Buffer.concat(chunks).toString("utf8") });
      });
      res.on("error", reject);
    });
    // `timeout` fires on socket inactivity: the server holds a long-poll silently, so the margin covers it.
    req.on("timeout", () =>
      req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })),
    );
    req.on("error", reject);
  });
}

const MAX_ANSWER_BYTES = 64 * 1024;
const agents = new Map<string, Agent>();
function keepAlive(url: URL): Agent {
  let agent = agents.get(url.protocol);
  if (!agent) {
    agent = new (httpModule(url.protocol).Agent)({ keepAlive: true, maxSockets: 1 });
    agents.set(url.protocol, agent);
  }
  return agent;
}

/** The token file's content, trimmed: the kubelet writes it before the container starts and renews it in place. */
function readToken(file: string): string {
  const { readFileSync } = process.getBuiltinModule("node:fs");
  const token = readFileSync(file, "utf8").trim();
  if (token === "") throw new Error(`${file} is empty`);
  return token;
}

async function poll(url: URL, pollTimeoutSeconds: number, signal: AbortSignal, tokenFile?: string): Promise<Outcome> {
  const headers: Record<string, string> = {};
  if (tokenFile !== undefined) {
    try {
      headers["authorization"] = `Bearer ${readToken(tokenFile)}`;
    } catch (error) {
      const message = `cannot read the pod's token (--token-file): ${(error as Error).message}`;
      return { kind: "retry", state: "token-unreadable", message };
    }
  }
  try {
    // The server holds the request up to pollTimeoutSeconds (capped lower on its side); past that plus a margin the connection is presumed dead.
    const res = await get(url, (pollTimeoutSeconds + 30) * 1000, signal, headers);
    if (res.status === 200) {
      const answer = parseAnswer(res.text);
      if (answer) return { kind: "answer", answer };
      return { kind: "retry", state: "bad-answer", message: `waiter API answered 200 with an unexpected body` };
    }
    let detail = "";
    try {
      const body = JSON.parse(res.text) as { error?: unknown };
      if (typeof body.error === "string") detail = `: ${body.error.slice(0, 300)}`;
    } catch {
      detail = "";
    }
    const outcome: Outcome = {
      kind: "retry",
      state: `http-${res.status}`,
      message: `waiter API answered HTTP ${res.status}${detail}`,
    };
    const after = retryAfter(res.retryAfter);
    if (after !== undefined) outcome.retryAfterSeconds = after;
    return outcome;
  } catch (error) {
    const err = error as { code?: string; message?: string };
    const code = err.code ?? "ERROR";
    return {
      kind: "retry",
      state: `error-${code}`,
      message: `waiter API unreachable (${code}): ${err.message ?? String(error)}`,
    };
  }
}

/** The process entry: parse, run, exit with the outcome's code. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const settings = settingsOrExit(WAITER_COMMAND, () => parseWaiterArgs(argv, process.env));
  if (typeof settings === "number") return settings;
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  return runWaiter(settings, controller.signal, (line) => process.stdout.write(`${line}\n`));
}

if (import.meta.main) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(
        `${WAITER_COMMAND}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exit(1);
    },
  );
}
