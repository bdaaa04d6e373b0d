// Calm console output for the demo: numbered steps, indented details, elapsed seconds, and a
// plain-text table. No colours unless the terminal is a TTY.
import { shortDigest as abbreviate } from "@digest-migrations/shared";

export class Narrator {
  readonly #t0 = Date.now();
  readonly #out: (line: string) => void;
  readonly #tty: boolean;
  #step = 0;
  readonly total: number;

  constructor(
    total: number,
    out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
    tty = process.stdout.isTTY,
  ) {
    this.total = total;
    this.#out = out;
    this.#tty = Boolean(tty);
  }

  elapsed(): string {
    return `${((Date.now() - this.#t0) / 1000).toFixed(1).padStart(5)}s`;
  }

  #bold(s: string): string {
    return this.#tty ? `\u001b[1m${s}\u001b[0m` : s;
  }

  #dim(s: string): string {
    return this.#tty ? `\u001b[2m${s}\u001b[0m` : s;
  }

  /** A new step: "[3/9] Argo CD syncs the application". */
  step(title: string): void {
    this.#step++;
    this.#out("");
    this.#out(`${this.#dim(this.elapsed())}  ${this.#bold(`[${this.#step}/${this.total}] ${title}`)}`);
  }

  /** A detail line under the current step. */
  say(line: string): void {
    this.#out(`${this.#dim(this.elapsed())}        ${line}`);
  }

  /** A line of explanation (no timestamp). */
  note(line: string): void {
    this.#out(`               ${this.#dim(line)}`);
  }

  table(header: string[], rows: string[][]): void {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (cells: string[]): string =>
      cells
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd();
    this.#out("");
    this.#out(`  ${this.#bold(line(header))}`);
    this.#out(`  ${widths.map((w) => "-".repeat(w)).join("  ")}`);
    for (const r of rows) this.#out(`  ${line(r)}`);
  }

  raw(line: string): void {
    this.#out(line);
  }
}

/** sha256:abcdef… → sha256:abcdef123456, as kubectl's Digest column shows it; "-" for none. */
export function shortDigest(digest: string | undefined): string {
  return digest ? abbreviate(digest) : "-";
}
