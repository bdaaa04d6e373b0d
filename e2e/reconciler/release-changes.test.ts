// What the controller tells the waiter API after each burst of watch events, on a real kube-apiserver:
// the Migrators and pods that changed, as `namespace/name`. The waiter API re-asks only the held
// long-polls naming one of them, so a change the controller leaves out would leave a waiter held
// until its timeout.
//
// A test of the controller's caches against the API server, so the Controller runs in this process
// (its change notices are not visible from outside), under a ServiceAccount bound to the shipped
// ClusterRole (reconciler/deploy/rbac.yaml). It needs no kubelet: the one pod names a scheduler that
// does not exist, so it is never bound to the node and never runs.
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import { API_VERSION, KIND } from "@digest-migrations/shared";
import type { KubeObject } from "@digest-migrations/shared";
import { Controller, KubeConfig } from "../../reconciler/src/controller.ts";
import { createLogger } from "../../reconciler/src/log.ts";
import { objectKey } from "../../reconciler/src/release.ts";
import { waitFor } from "../kit/wait.ts";
import { repoRoot } from "../node/images.ts";
import { serverSideApply, waitEstablished } from "../pipeline/apply.ts";
import { readManifests } from "../pipeline/install.ts";
import { nodeEnv } from "../world/env.ts";
import type { NodeEnv } from "../world/env.ts";
import { CHART_DIR } from "../world/reconciler-release.ts";

const SERVICE_ACCOUNT = "digest-migrations-reconciler";

/** The chart's CRD, the shipped ClusterRole bound to a ServiceAccount of the test's namespace: its kubeconfig. */
async function reconcilerKubeconfig(t: Test, env: NodeEnv): Promise<KubeConfig> {
  for (const crd of readManifests(path.join(CHART_DIR, "crds/crd.yaml"))) {
    await serverSideApply(env.kube, crd);
    await waitEstablished(env.kube, crd.metadata.name ?? "");
  }
  const role = readManifests(path.join(repoRoot, "reconciler/deploy/rbac.yaml")).find((d) => d.kind === "ClusterRole");
  if (role === undefined) throw new Error("reconciler/deploy/rbac.yaml has no ClusterRole");
  await serverSideApply(env.kube, role);
  const binding: KubeObject = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: `${role.metadata.name}-${env.namespace}` },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name },
    subjects: [{ kind: "ServiceAccount", name: SERVICE_ACCOUNT, namespace: env.namespace }],
  };
  await env.kube.createObject(binding);
  t.teardown(() => env.kube.deleteObject(binding.apiVersion, binding.kind, undefined, binding.metadata.name ?? ""));
  const kc = new KubeConfig();
  kc.loadFromFile(await env.cluster.kubeconfigFor(env.namespace, SERVICE_ACCOUNT));
  return kc;
}

t.test("the controller reports every changed Migrator and pod by key, each under its own kind", async (t) => {
  const env = await nodeEnv(t, { postgres: false });
  const controller = new Controller({
    kubeconfig: await reconcilerKubeconfig(t, env),
    namespaces: [env.namespace],
    identity: "e2e",
    log: createLogger({ level: process.env.DM_E2E_VERBOSE ? "debug" : "silent" }),
  });
  await controller.start();
  controller.startWriting();
  t.teardown(() => controller.stop());

  const key = (name: string) => objectKey(env.namespace, name);
  // Each notice, with whether the object was in the controller's cache when the listener heard of it.
  const seen = { migrators: new Set<string>(), pods: new Set<string>() };
  t.teardown(
    controller.onChange((changes) => {
      for (const k of changes.migrators) {
        const name = k.slice(env.namespace.length + 1);
        seen.migrators.add(`${k} ${controller.migrators.get(env.namespace, name) ? "cached" : "gone"}`);
      }
      for (const k of changes.pods) {
        const name = k.slice(env.namespace.length + 1);
        seen.pods.add(`${k} ${controller.pods.get(env.namespace, name) ? "cached" : "gone"}`);
      }
    }),
  );
  const reported = async (kind: keyof typeof seen, name: string, state: "cached" | "gone", what: string) => {
    await waitFor(() => seen[kind].has(`${key(name)} ${state}`), {
      what,
      timeoutMs: 15_000,
      describe: () => JSON.stringify([...seen[kind]]),
    });
    t.pass(what);
  };
  const forget = () => {
    seen.migrators.clear();
    seen.pods.clear();
  };
  const anyNotice = (kind: keyof typeof seen, name: string) =>
    [...seen[kind]].some((s) => s.startsWith(`${key(name)} `));

  await env.kube.createObject({
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: "db", namespace: env.namespace },
    spec: { selector: { matchLabels: { app: "web" } }, command: ["migrate"] },
  });
  await reported("migrators", "db", "cached", "Migrator db reported as created");
  t.notOk(anyNotice("pods", "db"), "a Migrator is not reported as a pod");

  await env.kube.createObject({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "lone", namespace: env.namespace, labels: { app: "other" } },
    spec: { schedulerName: "e2e-no-such-scheduler", containers: [{ name: "app", image: "example.invalid/app:1" }] },
  });
  await reported("pods", "lone", "cached", "pod lone reported as created");
  t.notOk(anyNotice("migrators", "lone"), "a pod is not reported as a Migrator");

  forget();
  await env.kube.patchObject("v1", "Pod", env.namespace, "lone", { metadata: { labels: { tier: "edge" } } });
  await reported("pods", "lone", "cached", "pod lone reported as changed");

  forget();
  await env.kube.patchObject(API_VERSION, KIND, env.namespace, "db", {
    metadata: { annotations: { note: "touched" } },
  });
  await reported("migrators", "db", "cached", "Migrator db reported as changed");

  // Reported once the cache no longer holds it, so the waiter API's re-ask sees the deletion.
  await env.kube.deleteObject("v1", "Pod", env.namespace, "lone");
  await reported("pods", "lone", "gone", "pod lone reported as deleted");
  await env.kube.deleteObject(API_VERSION, KIND, env.namespace, "db");
  await reported("migrators", "db", "gone", "Migrator db reported as deleted");
});
