// The files the chart carries as byte-for-byte copies (Helm reads nothing outside a chart).
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "..");
const CHART = path.join(ROOT, "charts", "digest-migrations");

export const CHART_COPIES: ReadonlyArray<{ from: string; to: string }> = [
  { from: path.join(ROOT, "reconciler", "deploy", "crd.yaml"), to: path.join(CHART, "crds", "crd.yaml") },
  { from: path.join(ROOT, "deploy", "argocd", "argocd-cm.yaml"), to: path.join(CHART, "files", "argocd-cm.yaml") },
];
