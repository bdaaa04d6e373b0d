// Plain-text tables (Markdown pipe tables, so they paste into a README unchanged) and number formats.
import type { Summary } from "./stats.ts";

export interface Table {
  title: string;
  columns: string[];
  rows: string[][];
  notes: string[];
}

export function formatTable(table: Table): string {
  const widths = table.columns.map((c, i) => Math.max(c.length, ...table.rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    `| ${widths.map((w, i) => (cells[i] ?? "").padEnd(w)).join(" | ")} |`;
  const out = [`### ${table.title}`, "", line(table.columns), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`];
  for (const row of table.rows) out.push(line(row));
  if (table.notes.length > 0) out.push("", ...table.notes.map((n) => `- ${n}`));
  return out.join("\n") + "\n";
}

/** Seconds with 2 decimals (or milliseconds below 1 s when `ms` is asked). */
export function seconds(ms: number): string {
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "–";
}

export function millis(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** "median (min–max)" in seconds. */
export function spreadSeconds(s: Summary): string {
  return `${(s.median / 1000).toFixed(2)} s (${(s.min / 1000).toFixed(2)}–${(s.max / 1000).toFixed(2)})`;
}

export function spreadMillis(s: Summary): string {
  return `${millis(s.median)} (${millis(s.min)}–${millis(s.max)})`;
}

export function megabytes(kb: number): string {
  return Number.isFinite(kb) ? `${(kb / 1024).toFixed(0)} MB` : "–";
}

export function ratio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}×` : "–";
}

/** "yes" / "NO" against a target, so misses stand out in the table. */
export function verdict(ok: boolean): string {
  return ok ? "yes" : "NO";
}
