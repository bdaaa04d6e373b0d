// Structured JSON logs (one object per line on stdout). Child loggers carry the fields an operator
// filters on: `migrator` (namespace/name), `pod` (namespace/name), `digest`.
import { pino } from "pino";
import type { Logger, LevelWithSilent } from "pino";

export type { Logger };

/** Log fields attached to child loggers. */
export interface LogContext {
  migrator?: string;
  pod?: string;
  digest?: string;
  [key: string]: unknown;
}

const LEVELS: readonly LevelWithSilent[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function isLogLevel(value: string): value is LevelWithSilent {
  return (LEVELS as readonly string[]).includes(value);
}

/** Builds a JSON logger writing to `destination` (stdout by default). */
export function createLogger(
  options: { level?: string; name?: string; destination?: pino.DestinationStream } = {},
): Logger {
  const level = options.level ?? "info";
  if (!isLogLevel(level)) throw new Error(`invalid log level "${level}": expected one of ${LEVELS.join(", ")}`);
  const settings: pino.LoggerOptions = {
    level,
    name: options.name ?? "digest-migrations-reconciler",
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

/** The process-wide logger; `main.ts` sets its level from `--log-level`. */
export const log: Logger = createLogger({
  level: process.env["LOG_LEVEL"] && isLogLevel(process.env["LOG_LEVEL"]) ? process.env["LOG_LEVEL"] : "info",
});

/** A child logger carrying migrator/pod/digest fields (undefined fields are left out). */
export function withContext(parent: Logger, context: LogContext): Logger {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(context)) if (value !== undefined) fields[key] = value;
  return parent.child(fields);
}
