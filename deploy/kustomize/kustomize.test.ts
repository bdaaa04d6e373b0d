// deploy/kustomize renders with the real kubectl: the reconciler's manifests unchanged, plus an argocd-cm
// holding exactly the Migrator keys; and the deploy/argocd component merges those keys into an existing
// argocd-cm (other keys kept, any namespace).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { KUSTOMIZE_DIR, RECONCILER_DEPLOY_DIR, keyOf, parseManifests, renderKustomize } from "../../charts/render.ts";
import { argocdCmData } from "../argocd/snippet.ts";

t.test("deploy/kustomize = reconciler/deploy + argocd-cm with the Migrator keys", async (t) => {
  const rendered = parseManifests(renderKustomize(), "kubectl kustomize deploy/kustomize");
  const reconciler = parseManifests(renderKustomize(RECONCILER_DEPLOY_DIR), "kubectl kustomize reconciler/deploy");
  t.ok(reconciler.length >= 8);
  for (const want of reconciler) {
    t.same(
      rendered.find((o) => keyOf(o) === keyOf(want)),
      want,
      `${keyOf(want)} as reconciler/deploy renders it`,
    );
  }
  const extra = rendered.filter((o) => !reconciler.some((r) => keyOf(r) === keyOf(o)));
  t.same(extra.map(keyOf), ["ConfigMap/argocd/argocd-cm"]);
  t.same(extra[0]?.["data"], argocdCmData(), "the keys of deploy/argocd, byte for byte");
  t.equal(
    extra[0]?.metadata.annotations?.["argocd.argoproj.io/sync-options"],
    "ServerSideApply=true",
    "Argo CD applies it server-side too",
  );
});

t.test("the deploy/argocd component merges the keys into an Argo CD build's argocd-cm", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "argocd-build-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    path.join(dir, "install.yaml"),
    [
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  url: https://argocd.example\n",
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-rbac-cm\n",
    ].join("---\n"),
  );
  writeFileSync(
    path.join(dir, "kustomization.yaml"),
    // Kustomize takes components by relative path only.
    `namespace: gitops\nresources: [install.yaml]\ncomponents: [${path.relative(dir, path.join(KUSTOMIZE_DIR, "..", "argocd"))}]\n`,
  );
  const rendered = parseManifests(renderKustomize(dir), dir);
  const cm = rendered.find((o) => o.metadata.name === "argocd-cm");
  t.equal(cm?.metadata.namespace, "gitops", "the build's namespace, not the snippet's");
  t.same(cm?.["data"], { url: "https://argocd.example", ...argocdCmData() }, "other keys kept");
  t.notOk(rendered.find((o) => o.metadata.name === "argocd-rbac-cm")?.["data"], "other ConfigMaps untouched");
});
