// Copies into the chart the two files it must carry itself (Helm reads nothing outside a chart):
//   reconciler/deploy/crd.yaml      → charts/digest-migrations/crds/crd.yaml
//   deploy/argocd/argocd-cm.yaml    → charts/digest-migrations/files/argocd-cm.yaml
// Run `node charts/generate.ts` after either changes; chart.test.ts fails while a copy differs.
import { copyFileSync } from "node:fs";
import { CHART_COPIES } from "./copies.ts";

for (const { from, to } of CHART_COPIES) copyFileSync(from, to);
