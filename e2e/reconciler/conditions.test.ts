// Problems the reconciler cannot fix show as a clear condition on the Migrator, never a crash:
// a malformed selector, an imageID without a repository digest, an image that cannot be pulled — and
// the last one clears by itself once the image exists (the kubelet retries the probe's pull); an
// admission policy that refuses to let the reconciler pin a pod's image.
import t from "tap";
import { REASONS } from "@digest-migrations/shared";
import { POLICY_LABEL, POLICY_MESSAGE, denyImageChanges } from "../harness/image-policy.ts";
import { deployment, pod } from "../harness/objects.ts";
import { waitFor } from "../kit/wait.ts";
import { APP_IMAGE, appContainer, appImage, reconcilerEnv, reportRunning, runningImages } from "./setup.ts";

t.test("malformed selector, digest-less imageID, unpullable image", async (t) => {
  const env = await reconcilerEnv(t);
  env.registry.push(APP_IMAGE, "latest", appImage("v1"));

  // A selector the API accepts but Kubernetes semantics reject: "In" needs values.
  await env.migrator("bad", { selector: { matchExpressions: [{ key: "app", operator: "In", values: [] }] } });
  const bad = await env.waitReason("bad", "InvalidSpec");
  const badReady = bad.status?.conditions?.find((c) => c.type === "Ready");
  t.match(badReady?.message, /spec\.selector/, "the message names the field");

  // An ungated pod whose node reports a configuration ID, not a repository digest. The pod names
  // a node no emulator runs, so the test writes its status as such a kubelet would.
  await env.migrator("local", { selector: { matchLabels: { app: "local" } } });
  const local = pod(
    env.namespace,
    "local-1",
    { nodeName: "elsewhere", containers: [appContainer(env)] },
    { app: "local" },
  );
  await env.kube.createObject(local);
  const configID = `sha256:${"ab".repeat(32)}`;
  await reportRunning(env, "local-1", `docker://${configID}`);
  const noDigest = await env.waitReason("local", "NoDigest");
  t.match(noDigest.status?.conditions?.find((c) => c.type === "Ready")?.message, /configuration ID/);
  t.equal((await env.jobs()).length, 0, "no Job for a guessed digest");

  // A gated pod whose image cannot be pulled: the probe's pull failure shows on the Migrator.
  await env.migrator("missing", { selector: { matchLabels: { app: "missing" } }, command: ["migrate"] });
  await env.kube.createObject(
    deployment(env.namespace, "missing", [appContainer(env, "registry.example/never-pushed:latest")], {
      initContainers: [env.waiter("missing")],
    }),
  );
  const probeFailed = await env.waitReason("missing", "ProbeFailed", 60_000);
  t.match(probeFailed.status?.conditions?.find((c) => c.type === "Ready")?.message, /cannot pull/);
  t.ok((await env.waitEvents("ProbeFailed")).length >= 1, "an Event");
  t.ok(env.controller.synced(), "the controller is still running");

  // CI pushes the image after all. The same probe pod recovers (the kubelet retries a failed pull with
  // back-off, ImagePullBackOff), so the migration runs and the pods are released without a restart.
  const pushed = env.registry.push("registry.example/never-pushed", "latest", appImage("v1"));
  const recovered = await env.waitReady("missing", pushed, 90_000);
  t.equal(recovered.status?.lastSuccessfulMigration, pushed, "migrated once the image exists");
  t.equal(
    (await env.jobs()).filter((j) => j.metadata.name?.startsWith("missing-")).length,
    1,
    "one Job for the digest",
  );
  await waitFor(async () => (await env.getMigrator("bad"))?.status?.observedGeneration === 1, {
    what: "observedGeneration",
    timeoutMs: 10_000,
  });
});

t.test(
  "an admission policy refusing the pin: PinFailed, the pods stay gated, then released once it is lifted",
  async (t) => {
    // Visit every Migrator each second: lifting a webhook causes no event the reconciler could see.
    const env = await reconcilerEnv(t, { controller: { resyncSeconds: 1 } });
    const digest = env.registry.push(APP_IMAGE, "latest", appImage("v1"));
    const policy = await denyImageChanges(env);
    t.teardown(() => policy.remove());
    await env.migrator("guarded", { selector: { matchLabels: { app: "guarded" } }, command: ["migrate"] });
    await env.kube.createObject(
      deployment(env.namespace, "guarded", [appContainer(env)], {
        initContainers: [env.waiter("guarded")],
        labels: { [POLICY_LABEL.key]: POLICY_LABEL.value },
      }),
    );
    const refused = await env.waitReason("guarded", REASONS.PinFailed, 60_000);
    const ready = refused.status?.conditions?.find((c) => c.type === "Ready");
    t.equal(ready?.status, "False");
    t.match(
      ready?.message,
      new RegExp(
        `refused to pin container app of pod guarded-[^ ]+ to ${APP_IMAGE}:latest@${digest}: .*${POLICY_MESSAGE}`,
      ),
      "the message names the pod, the pin and the policy's answer",
    );
    t.ok(policy.denials >= 1, "the webhook denied the pin");
    const events = await env.waitEvents(REASONS.PinFailed);
    t.equal(events[0]?.["type"], "Warning", "a Warning Event");
    const [gated] = await env.pods("app=guarded");
    t.equal(gated?.spec.containers[0]?.image, `${APP_IMAGE}:latest`, "the pod is not pinned");
    t.same(runningImages(await env.pods("app=guarded")), [], "the app container has not started");

    await policy.remove();
    const migrated = await env.waitReady("guarded", digest, 90_000);
    t.equal(migrated.status?.lastSuccessfulMigration, digest);
    await waitFor(async () => runningImages(await env.pods("app=guarded")).some((id) => id.endsWith(digest)), {
      what: "the guarded pod to be pinned and released",
      timeoutMs: 60_000,
    });
  },
);
