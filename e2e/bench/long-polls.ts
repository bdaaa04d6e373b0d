// The waiters of many gated pods, played from the benchmark process: one long-poll per pod against
// the reconciler's waiter API, built, read and paced with the waiter's own functions
// (reconciler/src/waiter.ts: waitUrl, parseAnswer, retryAfter, pauseAfterAnswerMs, retryDelayMs; GET
// /v1/wait?namespace=&pod=&migrator=&container=&timeoutSeconds=30&podUID=, node:http, a keep-alive
// Agent): a not-ready answer is followed by the next long-poll at once, or
// after a pause if it came back within a second; a 429, a 5xx or a connection error by a capped,
// jittered exponential backoff that honours Retry-After. A pod's poll stops once it is answered
// ready, as its waiter would exit. No child processes: thousands of waiter processes would measure
// this machine, not the reconciler.
//
// One Agent serves every pod (keepAlive, a socket per pod allowed and kept), so the reconciler
// holds one connection per long-poll in flight, as it would with one waiter per pod.
import http from "node:http";
import type { Socket } from "node:net";
import { parseAnswer, waitUrl } from "@digest-migrations/shared";
import type { WaitAnswer, WaitQuery } from "@digest-migrations/shared";
import { pauseAfterAnswerMs, retryAfter, retryDelayMs } from "../../reconciler/src/waiter.ts";
import { delay, waitFor } from "../kit/wait.ts";

/** What the injected waiter asks unless told otherwise (`--poll-timeout`'s default). */
export const WAITER_POLL_TIMEOUT_SECONDS = 30;
/** The waiter's backoff cap (`--max-backoff`'s default). */
const MAX_BACKOFF_MS = 30_000;

export interface LongPollTarget extends WaitQuery {
  /** metadata.uid, as the downward API gives it to the waiter. */
  podUID: string;
}

export interface LongPollsOptions {
  /** Called once per pod, when it is answered ready (Date.now() of the answer). */
  onReady?: (target: LongPollTarget, answer: WaitAnswer, at: number) => void;
  pollTimeoutSeconds?: number;
}

/** One request's outcome: an answer, or a reason to retry (with the server's Retry-After, if any). */
type Retry = { kind: "retry"; state: string; retryAfterSeconds?: number };
type PollOutcome = { kind: "answer"; answer: WaitAnswer } | Retry;

/** Requests by outcome, e.g. "ready", "not ready", "HTTP 429", "error ECONNRESET". */
export type Outcomes = Map<string, number>;

export class WaiterLongPolls {
  readonly #api: URL;
  readonly #targets: readonly LongPollTarget[];
  readonly #options: LongPollsOptions;
  readonly #agent: http.Agent;
  readonly #stop = new AbortController();
  readonly #sockets = new Set<Socket>();
  #loops: Promise<void>[] = [];
  #held = 0;
  #peakHeld = 0;
  #peakHeldAt = Number.NaN;
  #startedAt = Number.NaN;
  /** Pod name → Date.now() of its ready answer. */
  readonly readyAt = new Map<string, number>();
  /** Pod name → Date.now() when the request answered ready was sent (a long-poll held, or a re-poll). */
  readonly readySentAt = new Map<string, number>();
  readonly outcomes: Outcomes = new Map();
  /** Not-ready answers by reason. */
  readonly notReadyReasons: Outcomes = new Map();
  /** Ready answers whose digest was not the one pinned in the pod (must stay 0). */
  wrongDigest = 0;

  /** `apiUrl`: the waiter API's base URL (the waiter's `--api`). */
  constructor(apiUrl: string, targets: readonly LongPollTarget[], options: LongPollsOptions = {}) {
    this.#api = new URL(apiUrl);
    this.#targets = targets;
    this.#options = options;
    const sockets = Math.max(1, targets.length);
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  }

  /** Long-polls in flight now (sent, not yet answered). */
  get held(): number {
    return this.#held;
  }

  /** Most long-polls in flight at once so far, and when (Date.now()) that was first reached. */
  get peak(): { held: number; at: number; msAfterStart: number } {
    return { held: this.#peakHeld, at: this.#peakHeldAt, msAfterStart: this.#peakHeldAt - this.#startedAt };
  }

  /** Open connections to the waiter API. */
  get sockets(): number {
    return this.#sockets.size;
  }

  get done(): boolean {
    return this.readyAt.size === this.#targets.length;
  }

  /** Starts every pod's waiter loop. */
  start(expectedDigest: (target: LongPollTarget) => string | undefined): void {
    this.#startedAt = Date.now();
    this.#loops = this.#targets.map((t) => this.#loop(t, expectedDigest(t)));
  }

  /** Stops every poll still running and closes every socket; resolves once they are closed. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.all(this.#loops);
    this.#agent.destroy();
    await waitFor(() => this.#sockets.size === 0, {
      what: "the benchmark's waiter sockets to close",
      timeoutMs: 10_000,
      intervalMs: 20,
      describe: () => `${this.#sockets.size} still open`,
    });
  }

  /** Closes the idle keep-alive sockets (every pod answered ready: their waiters would have exited). */
  closeIdle(): void {
    this.#agent.destroy();
  }

  #count(map: Outcomes, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }

  async #loop(t: LongPollTarget, digest: string | undefined): Promise<void> {
    const signal = this.#stop.signal;
    const timeoutSeconds = this.#options.pollTimeoutSeconds ?? WAITER_POLL_TIMEOUT_SECONDS;
    const url = waitUrl(this.#api, t, timeoutSeconds);
    let failures = 0;
    while (!signal.aborted) {
      const started = Date.now();
      const outcome = await this.#get(url, (timeoutSeconds + 30) * 1000, signal);
      if (signal.aborted) return;
      if (outcome.kind === "answer") {
        failures = 0;
        const { answer } = outcome;
        if (answer.ready) {
          const at = Date.now();
          this.#count(this.outcomes, "ready");
          if (digest !== undefined && answer.digest !== digest) this.wrongDigest++;
          this.readyAt.set(t.pod, at);
          this.readySentAt.set(t.pod, started);
          this.#options.onReady?.(t, answer, at);
          return;
        }
        this.#count(this.outcomes, "not ready");
        this.#count(this.notReadyReasons, answer.reason);
        const wait = pauseAfterAnswerMs(Date.now() - started);
        if (wait > 0) await delay(wait, signal);
        continue;
      }
      this.#count(this.outcomes, outcome.state);
      const wait = retryDelayMs(failures, MAX_BACKOFF_MS, outcome.retryAfterSeconds);
      failures++;
      await delay(wait, signal);
    }
  }

  #get(url: URL, timeoutMs: number, signal: AbortSignal): Promise<PollOutcome> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (value: PollOutcome): void => {
        if (settled) return;
        settled = true;
        this.#held--;
        resolve(value);
      };
      this.#held++;
      if (this.#held > this.#peakHeld) {
        this.#peakHeld = this.#held;
        this.#peakHeldAt = Date.now();
      }
      const req = http.get(url, { signal, timeout: timeoutMs, agent: this.#agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString("utf8");
          if (status === 200) {
            const answer = parseAnswer(text);
            finish(answer ? { kind: "answer", answer } : { kind: "retry", state: "bad answer" });
            return;
          }
          const out: Retry = { kind: "retry", state: `HTTP ${status}` };
          const after = retryAfter(res.headers["retry-after"]);
          if (after !== undefined) out.retryAfterSeconds = after;
          finish(out);
        });
        res.on("error", (error: NodeJS.ErrnoException) => finish({ kind: "retry", state: errorState(error) }));
      });
      req.on("socket", (socket: Socket) => {
        if (this.#sockets.has(socket)) return;
        this.#sockets.add(socket);
        socket.once("close", () => this.#sockets.delete(socket));
      });
      req.on("timeout", () =>
        req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })),
      );
      req.on("error", (error: NodeJS.ErrnoException) => finish({ kind: "retry", state: errorState(error) }));
    });
  }
}

function errorState(error: NodeJS.ErrnoException): string {
  return `error ${error.code ?? error.name}`;
}
