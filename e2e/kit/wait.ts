// Waiting on a condition with a deadline: the only way e2e tests synchronise with the cluster,
// the node and the processes they run (never a bare sleep).

export interface WaitOptions {
  /** What is awaited, for the timeout message ("deployment web to roll out"). */
  what: string;
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Poll interval (default 100 ms). */
  intervalMs?: number;
  /** Extra context appended to the timeout message (e.g. the object's current status). */
  describe?: () => string | Promise<string>;
  /** Daemons the condition depends on: if one exits, the wait fails at once with its log's tail. */
  processes?: { assertRunning(what: string): void }[];
}

export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
}

/** The falsy results that mean "not yet". */
type NotYet = undefined | null | false | 0 | "";

/**
 * Polls `cond` until it returns a truthy value and resolves with that value. An exception thrown
 * by `cond` counts as "not yet" (the cluster may be briefly unreachable); the last one is quoted
 * in the timeout error, together with `describe()`.
 */
export async function waitFor<T>(cond: () => T | NotYet | Promise<T | NotYet>, opts: WaitOptions): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    for (const p of opts.processes ?? []) p.assertRunning(opts.what);
    try {
      const value = await cond();
      if (value) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  let message = `timed out after ${timeoutMs} ms waiting for ${opts.what}`;
  if (lastError !== undefined) message += `; last error: ${errorText(lastError)}`;
  if (opts.describe) {
    try {
      message += `; ${await opts.describe()}`;
    } catch (err) {
      message += `; describe() failed: ${errorText(err)}`;
    }
  }
  throw new WaitTimeoutError(message);
}

/** A promise resolved after `ms` — for pacing retries and backoff, not for synchronisation. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
