// A person's view of one run: what was rendered, which Migrator gates which workload (and why not), the
// sync waves chosen and the files a directory source skipped.
import { describeObject, describeOrigin } from "./manifests.ts";
import type { GenerateResult } from "./generate.ts";

export function explain(result: GenerateResult): string {
  const ns = result.settings.namespace;
  const lines: string[] = [];
  lines.push(`source: ${result.settings.dir} (${result.sourceType}), ${result.manifests.length} objects`);
  lines.push(`default namespace: ${ns === "" ? "(none)" : ns}`);
  lines.push(`waiter image: ${result.settings.waiter.image}`);
  lines.push(`reconciler url: ${result.settings.waiter.apiUrl}`);
  if (result.report.migrators.length === 0) lines.push("no Migrators: nothing is gated");
  for (const w of result.report.migrators) {
    lines.push("");
    lines.push(`${describeObject(w.migrator.object, ns)} (${describeOrigin(w.migrator.origin)})`);
    if (w.generatedFrom !== undefined) {
      lines.push(`  generated from the annotation on ${describeObject(w.generatedFrom.object, ns)}`);
    }
    const before = w.wave.before ?? "(none)";
    lines.push(`  sync wave: ${before} -> ${w.wave.after ?? "(none)"}: ${w.wave.reason}`);
    for (const i of w.injected) {
      lines.push(
        `  gates ${describeObject(i.workload.object, ns)} (${describeOrigin(i.workload.origin)}): init container ${i.waiter} waits for container ${i.container}`,
      );
    }
    for (const o of w.optedOut) {
      lines.push(`  selects ${describeObject(o.workload.object, ns)} but not gated: ${o.reason}`);
    }
    if (w.injected.length === 0 && w.optedOut.length === 0) lines.push("  selects no workload");
  }
  if (result.report.ungated.length > 0) {
    lines.push("");
    lines.push("workloads no Migrator selects:");
    for (const u of result.report.ungated)
      lines.push(`  ${describeObject(u.object, ns)} (${describeOrigin(u.origin)})`);
  }
  if (result.skipped.length > 0) {
    lines.push("");
    lines.push("files not read as manifests:");
    for (const s of result.skipped) lines.push(`  ${s.rel}: ${s.reason}`);
  }
  return lines.join("\n") + "\n";
}
