// Problems the reconciler cannot fix show as a clear condition on the Migrator, never a crash:
// a malformed selector, an imageID without a repository digest, an image that cannot be pulled — and
// the last one clears by itself once the image exists (the kubelet retries the probe's pull); an
// admission policy that refuses to let the reconciler pin a pod's image. Every pod status here is the
// real kubelet's.
import t from "tap";
import { REASONS } from "@digest-migrations/shared";
import { POLICY_LABEL, POLICY_MESSAGE, denyImageChanges } from "../harness/image-policy.ts";
import { waitFor } from "../kit/wait.ts";
import {
  appContainer,
  appDeployment,
  appImage,
  describeMigrator,
  nodeOnlyImage,
  nodeOnlyPod,
  reconcilerEnv,
  runningImages,
  unmigratedStarts,
} from "./setup.ts";

t.test("malformed selector, digest-less imageID, unpullable image", async (t) => {
  const env = await reconcilerEnv(t);
  const local = await nodeOnlyImage(t, env, "local");

  // A selector the API accepts but Kubernetes semantics reject: "In" needs values.
  await env.migrator("bad", { selector: { matchExpressions: [{ key: "app", operator: "In", values: [] }] } });
  const bad = await env.waitReason("bad", "InvalidSpec");
  const badReady = bad.status?.conditions?.find((c) => c.type === "Ready");
  t.match(badReady?.message, /spec\.selector/, "the message names the field");

  // An ungated pod running an image the node has but no registry serves (imported into containerd,
  // never pulled): the kubelet reports its configuration ID, not a repository digest.
  await env.migrator("local", { selector: { matchLabels: { app: "local" } } });
  await env.kube.createObject(nodeOnlyPod(env.namespace, "local-1", local.ref, "local"));
  const imageID = await waitFor(async () => runningImages(await env.pods("app=local"))[0], {
    what: "pod local-1 to run the node-only image",
    timeoutMs: 120_000,
    describe: () => describeMigrator(env, "local"),
  });
  t.equal(imageID, local.id, "the kubelet reports the image's configuration ID as imageID, without a repository");
  const noDigest = await env.waitReason("local", "NoDigest");
  t.match(
    noDigest.status?.conditions?.find((c) => c.type === "Ready")?.message,
    new RegExp(`"${local.id}" is an image configuration ID`),
  );
  t.equal((await env.jobs()).length, 0, "no Job for a guessed digest");

  // A gated pod whose image cannot be pulled: the probe's pull failure shows on the Migrator.
  const missing = env.ref("latest", "never-pushed");
  await env.migrator("missing", { selector: { matchLabels: { app: "missing" } }, command: ["migrate"] });
  await env.kube.createObject(
    appDeployment(env, "missing", { migrator: "missing", container: appContainer(env, missing) }),
  );
  const probeFailed = await env.waitReason("missing", "ProbeFailed");
  const failure = probeFailed.status?.conditions?.find((c) => c.type === "Ready")?.message;
  t.match(failure, `cannot pull ${missing}: `, "the message names the image");
  t.match(failure, /: (ErrImagePull|ImagePullBackOff): .*not found/, "and the kubelet's reason: not found");
  t.ok((await env.waitEvents("ProbeFailed")).length >= 1, "an Event");
  t.ok(
    (await env.release.waitReady(1)).length === 1 && (await env.release.restarts()).length === 0,
    "the reconciler is still running and ready",
  );

  // CI pushes the image after all. The same probe pod recovers (the kubelet retries a failed pull with
  // back-off, ImagePullBackOff), so the migration runs and the pods are released without a restart.
  const pushed = await env.push(appImage("v1"), "latest", "never-pushed");
  const recovered = await env.waitReady("missing", pushed, 180_000);
  t.equal(recovered.status?.lastSuccessfulMigration, pushed, "migrated once the image exists");
  t.equal(
    (await env.jobs()).filter((j) => j.metadata.name?.startsWith("missing-")).length,
    1,
    "one Job for the digest",
  );
  await waitFor(async () => runningImages(await env.pods("app=missing")).some((id) => id.endsWith(`@${pushed}`)), {
    what: "the missing pod to be released",
    timeoutMs: 120_000,
    describe: () => describeMigrator(env, "missing"),
  });
  t.same(await unmigratedStarts(env, "missing-", [pushed]), [], "its app container started on the migrated digest");
  await waitFor(async () => (await env.getMigrator("bad"))?.status?.observedGeneration === 1, {
    what: "observedGeneration",
    timeoutMs: 10_000,
  });
});

/** `text` as a regular expression matching only itself. */
const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

t.test(
  "an admission policy refusing the pin: PinFailed, the pods stay gated, then released once it is lifted",
  async (t) => {
    const env = await reconcilerEnv(t);
    const digest = await env.push(appImage("v1"));
    const policy = await denyImageChanges(env);
    t.teardown(() => policy.remove());
    await env.migrator("guarded", { selector: { matchLabels: { app: "guarded" } }, command: ["migrate"] });
    await env.kube.createObject(
      appDeployment(env, "guarded", { migrator: "guarded", labels: { [POLICY_LABEL.key]: POLICY_LABEL.value } }),
    );
    const refused = await env.waitReason("guarded", REASONS.PinFailed);
    const ready = refused.status?.conditions?.find((c) => c.type === "Ready");
    t.equal(ready?.status, "False");
    t.match(
      ready?.message,
      new RegExp(
        `refused to pin container app of pod guarded-[^ ]+ to ${literal(`${env.ref()}@${digest}`)}: .*${POLICY_MESSAGE}`,
      ),
      "the message names the pod, the pin and the policy's answer",
    );
    t.ok(policy.denials >= 1, "the webhook denied the pin");
    const events = await env.waitEvents(REASONS.PinFailed);
    t.equal(events[0]?.["type"], "Warning", "a Warning Event");
    const [gated] = await env.pods("app=guarded");
    t.equal(gated?.spec.containers[0]?.image, env.ref(), "the pod is not pinned");
    t.same(runningImages(await env.pods("app=guarded")), [], "the app container has not started");
    t.same(await unmigratedStarts(env, "guarded-", []), [], "containerd never started it");

    // Lifting a webhook causes no event the reconciler could see: it pins at a later visit.
    await policy.remove();
    const migrated = await env.waitReady("guarded", digest, 180_000);
    t.equal(migrated.status?.lastSuccessfulMigration, digest);
    await waitFor(async () => runningImages(await env.pods("app=guarded")).some((id) => id.endsWith(digest)), {
      what: "the guarded pod to be pinned and released",
      timeoutMs: 120_000,
      describe: () => describeMigrator(env, "guarded"),
    });
    t.same(await unmigratedStarts(env, "guarded-", [digest]), [], "and it started on the migrated digest");
  },
);
