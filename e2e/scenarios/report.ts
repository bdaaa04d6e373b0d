// Small reporting helpers for scenario output: phase timings and figure tables, printed as tap
// comments so they show in CI logs beside the assertions.
import type { Test } from "tap";

export interface Clock {
  /** Records the time since the previous mark under `label`. */
  mark(label: string): void;
}

/** Phase timings of a test, printed when it ends. */
export function timings(t: Test): Clock {
  const t0 = Date.now();
  let last = t0;
  const rows: [string, number][] = [];
  t.teardown(() => {
    if (rows.length === 0) return;
    t.comment(
      `timings: ${rows.map(([l, ms]) => `${l} ${(ms / 1000).toFixed(1)}s`).join(", ")}; total ${((Date.now() - t0) / 1000).toFixed(1)}s`,
    );
  });
  return {
    mark(label: string): void {
      const now = Date.now();
      rows.push([label, now - last]);
      last = now;
    },
  };
}

/** A plain-text table as tap comment lines. */
export function table(t: Test, title: string, header: string[], rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
  t.comment(title);
  t.comment(line(header));
  t.comment(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of cells) t.comment(line(r));
}
