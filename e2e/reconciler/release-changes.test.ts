// What the controller tells the waiter API after each burst of watch events, on a real kube-apiserver:
// the Migrators and pods that changed, as `namespace/name`. The waiter API re-asks only the held
// long-polls naming one of them, so a change the controller leaves out would leave a waiter held
// until its timeout.
import t from "tap";
import { objectKey } from "../../reconciler/src/release.ts";
import { waitFor } from "../kit/wait.ts";
import { appContainer, reconcilerEnv } from "./setup.ts";

const MIGRATOR_API = "migrations.coderanger.net/v1beta1";

t.test("the controller reports every changed Migrator and pod by key, each under its own kind", async (t) => {
  const env = await reconcilerEnv(t);
  const key = (name: string) => objectKey(env.namespace, name);
  // Each notice, with whether the object was in the controller's cache when the listener heard of it.
  const seen = { migrators: new Set<string>(), pods: new Set<string>() };
  t.teardown(
    env.controller.onChange((changes) => {
      for (const k of changes.migrators) {
        const name = k.slice(env.namespace.length + 1);
        seen.migrators.add(`${k} ${env.controller.migrators.get(env.namespace, name) ? "cached" : "gone"}`);
      }
      for (const k of changes.pods) {
        const name = k.slice(env.namespace.length + 1);
        seen.pods.add(`${k} ${env.controller.pods.get(env.namespace, name) ? "cached" : "gone"}`);
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

  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await reported("migrators", "db", "cached", "Migrator db reported as created");
  t.notOk(anyNotice("pods", "db"), "a Migrator is not reported as a pod");

  await env.kube.createObject({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "lone", namespace: env.namespace, labels: { app: "other" } },
    spec: { containers: [appContainer(env)] },
  });
  await reported("pods", "lone", "cached", "pod lone reported as created");
  t.notOk(anyNotice("migrators", "lone"), "a pod is not reported as a Migrator");

  forget();
  await env.kube.patchObject("v1", "Pod", env.namespace, "lone", { metadata: { labels: { tier: "edge" } } });
  await reported("pods", "lone", "cached", "pod lone reported as changed");

  forget();
  await env.kube.patchObject(MIGRATOR_API, "Migrator", env.namespace, "db", {
    metadata: { annotations: { note: "touched" } },
  });
  await reported("migrators", "db", "cached", "Migrator db reported as changed");

  // Reported once the cache no longer holds it, so the waiter API's re-ask sees the deletion.
  await env.kube.deleteObject("v1", "Pod", env.namespace, "lone");
  await reported("pods", "lone", "gone", "pod lone reported as deleted");
  await env.kube.deleteObject(MIGRATOR_API, "Migrator", env.namespace, "db");
  await reported("migrators", "db", "gone", "Migrator db reported as deleted");
});
