// A bare Pod that Argo CD manages: the pin changes its spec.containers[*].image, so the live Pod differs
// from git. Argo CD diffs a Pod like any resource, and with self-heal it would apply git's image again.
// What prevents that (docs/usage.md#bare-pods-and-self-heal) is ignoreDifferences.managedFieldsManagers:
// Argo CD's util/argo/managedfields.Normalize removes from both sides of the diff every field that a
// trusted manager owns in the live object's metadata.managedFields. This test shows, on the real node,
// that the pinned image is such a field: created by Argo CD's field manager, the image of the gated
// container is owned by digest-migrations once pinned, and by nothing else.
import t from "tap";
import type { Pod } from "@digest-migrations/shared";
import { pod } from "../harness/objects.ts";
import { waitFor } from "../kit/wait.ts";
import {
  appContainer,
  appImage,
  appPodSpec,
  describeMigrator,
  reconcilerEnv,
  runningImages,
} from "../reconciler/setup.ts";

/** Argo CD's field manager when it applies a resource (gitops-engine's sync, manager "argocd-controller"). */
const ARGOCD_MANAGER = "argocd-controller";

interface ManagedFields {
  manager?: string;
  fieldsV1?: Record<string, unknown>;
}

/** Whether `entry` owns spec.containers[name=`container`].image. */
function ownsImage(entry: ManagedFields, container: string): boolean {
  const containers = (entry.fieldsV1?.["f:spec"] as Record<string, unknown> | undefined)?.["f:containers"] as
    Record<string, Record<string, unknown>> | undefined;
  return containers?.[`k:{"name":"${container}"}`]?.["f:image"] !== undefined;
}

t.test("the pinned image of a bare Pod is owned by digest-migrations in managedFields", async (t) => {
  const env = await reconcilerEnv(t);
  const digest = await env.push(appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "solo" } }, command: ["migrate"] });
  const desired = pod(
    env.namespace,
    "solo",
    appPodSpec(env, { containers: [appContainer(env)], initContainers: [env.waiter("db")] }),
    { app: "solo" },
  );
  await env.kube.request("POST", `/api/v1/namespaces/${env.namespace}/pods`, {
    query: { fieldManager: ARGOCD_MANAGER },
    body: desired,
  });
  await waitFor(async () => runningImages(await env.pods("app=solo")).some((id) => id.endsWith(`@${digest}`)), {
    what: "the bare pod to be pinned and released",
    timeoutMs: 180_000,
    describe: () => describeMigrator(env, "db"),
  });
  const [live] = (await env.pods("app=solo")) as [Pod];
  t.equal(live.spec.containers[0]?.image, `${env.ref()}@${digest}`, "the live Pod differs from git: pinned");
  const managed = (live.metadata as { managedFields?: ManagedFields[] }).managedFields ?? [];
  t.same(
    managed.filter((m) => ownsImage(m, "app")).map((m) => m.manager),
    ["digest-migrations"],
    "its image is owned by digest-migrations only: managedFieldsManagers: [digest-migrations] hides exactly the pin",
  );
  t.ok(
    managed.some((m) => m.manager === ARGOCD_MANAGER),
    "the rest of the Pod stays Argo CD's (its other fields are still diffed)",
  );
});
