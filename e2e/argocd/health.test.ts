// The Argo CD health check and retry action on live Migrators: the chart-installed reconciler drives
// one Migrator into each condition reason it can set, with the real node's pod statuses, and health.lua
// runs on the object as the API server returns it, in gopher-lua opened as Argo CD opens it
// (deploy/argocd/lua.ts). The test fails if the reconciler knows a reason this test never reached, so a
// new reason needs a new case here. UnsupportedRuntime is the one reason this node cannot produce (it
// runs containerd, not CRI-O): deploy/argocd/testdata/degraded_unsupportedRuntime.yaml covers it.
//
// DM_RECORD=1 also writes each live object, cleaned of what changes from run to run, to
// deploy/argocd/testdata/recorded/ with a health_test.yaml beside them, so deploy/argocd/health.test.ts
// checks the same objects without a control plane.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { stringify } from "yaml";
import { API_VERSION, KIND, REASONS } from "@digest-migrations/shared";
import type { Migrator } from "@digest-migrations/shared";
import { ARGOCD_DIR, health, runAction } from "../../deploy/argocd/lua.ts";
import type { HealthStatus } from "../../deploy/argocd/lua.ts";
import { POLICY_LABEL, denyImageChanges } from "../harness/image-policy.ts";
import { waitFor } from "../kit/wait.ts";
import { pod } from "../harness/objects.ts";
import {
  appContainer,
  appDeployment,
  appImage,
  appPodSpec,
  nodeOnlyImage,
  nodeOnlyPod,
  reconcilerEnv,
  runningImages,
} from "../reconciler/setup.ts";

const RECORDED = path.join(ARGOCD_DIR, "testdata", "recorded");
const record = process.env["DM_RECORD"] === "1";

/** The Argo CD health each reason must map to. */
const EXPECTED: Record<string, HealthStatus["status"]> = {
  [REASONS.WaitingForPods]: "Healthy",
  [REASONS.WaitingForImageID]: "Progressing",
  [REASONS.Probing]: "Progressing",
  [REASONS.ProbeFailed]: "Degraded",
  [REASONS.Running]: "Progressing",
  [REASONS.Succeeded]: "Healthy",
  [REASONS.Failed]: "Degraded",
  [REASONS.NoDigest]: "Degraded",
  [REASONS.PinFailed]: "Degraded",
  [REASONS.InvalidSpec]: "Degraded",
  [REASONS.TemplateNotFound]: "Degraded",
  [REASONS.UnsupportedRuntime]: "Degraded",
};

interface Recorded {
  reason: string;
  file: string;
  health: HealthStatus;
}

/** The live object without what differs from run to run (ids, versions, times, the test's namespace). */
function stable(migrator: Migrator, namespace: string): unknown {
  const copy = structuredClone(migrator) as Migrator & { metadata: Record<string, unknown> };
  for (const field of ["uid", "resourceVersion", "managedFields", "creationTimestamp", "selfLink"]) {
    delete copy.metadata[field];
  }
  const text = JSON.stringify(copy)
    .replaceAll(namespace, "apps")
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, "2026-01-01T00:00:00Z");
  return JSON.parse(text) as unknown;
}

t.test("health.lua on a live Migrator in every state the reconciler can set", async (t) => {
  const env = await reconcilerEnv(t);
  const holdFile = env.flag("hold");
  const failFile = env.flag("fail");
  writeFileSync(failFile, "");
  const recorded: Recorded[] = [];
  const reached = new Set<string>();

  const check = async (name: string, reason: string, timeoutMs = 90_000): Promise<Migrator> => {
    const live = await env.waitReason(name, reason, timeoutMs);
    reached.add(reason);
    const got = health(live);
    t.equal(got.status, EXPECTED[reason], `${reason}: Argo CD shows ${EXPECTED[reason]}`);
    if (got.status === "Degraded") t.match(got.message, reason, `${reason}: the message names the reason`);
    if (record) {
      mkdirSync(RECORDED, { recursive: true });
      const object = stable(live, env.namespace);
      recorded.push({ reason, file: `${reason}.yaml`, health: health(object) });
      writeFileSync(path.join(RECORDED, `${reason}.yaml`), stringify(object));
    }
    return live;
  };

  // WaitingForPods: nothing selected yet (Healthy, so a Migrator in an earlier sync wave never blocks).
  await env.migrator("idle", { selector: { matchLabels: { app: "idle" } } });
  await check("idle", REASONS.WaitingForPods);

  // InvalidSpec: a selector Kubernetes semantics reject.
  await env.migrator("invalid", { selector: { matchExpressions: [{ key: "app", operator: "In", values: [] }] } });
  await check("invalid", REASONS.InvalidSpec);

  // Probing: a gated pod bound to a node that does not exist, so no kubelet ever starts the probe
  // (bound to the same node) and it stays pending.
  await env.migrator("probing", { selector: { matchLabels: { app: "probing" } } });
  await env.kube.createObject(
    pod(
      env.namespace,
      "probing-1",
      appPodSpec(env, {
        nodeName: "unreachable",
        containers: [appContainer(env)],
        initContainers: [env.waiter("probing")],
      }),
      { app: "probing" },
    ),
  );
  await check("probing", REASONS.Probing);

  // WaitingForImageID: an ungated pod whose kubelet has not reported what it pulled (none ever will).
  await env.migrator("unreported", { selector: { matchLabels: { app: "unreported" } } });
  await env.kube.createObject(
    pod(env.namespace, "unreported-1", appPodSpec(env, { nodeName: "unreachable", containers: [appContainer(env)] }), {
      app: "unreported",
    }),
  );
  await check("unreported", REASONS.WaitingForImageID);

  // NoDigest: the real node runs an image no registry serves (imported into containerd, pull policy
  // Never); the kubelet reports its configuration ID, without a repository digest.
  const local = await nodeOnlyImage(t, env, "local");
  await env.migrator("local", { selector: { matchLabels: { app: "local" } } });
  await env.kube.createObject(nodeOnlyPod(env.namespace, "local-1", local.ref, "local"));
  await check("local", REASONS.NoDigest);

  // ProbeFailed: the gated image was never pushed; the kubelet cannot pull it for the probe.
  await env.migrator("unpulled", { selector: { matchLabels: { app: "unpulled" } }, command: ["migrate"] });
  await env.kube.createObject(
    appDeployment(env, "unpulled", {
      migrator: "unpulled",
      container: appContainer(env, env.ref("latest", "never-pushed")),
    }),
  );
  await check("unpulled", REASONS.ProbeFailed);

  // TemplateNotFound: no pod running the digest matches spec.templateSelector.
  await env.push(appImage("v1"));
  await env.migrator("untemplated", {
    selector: { matchLabels: { app: "untemplated" } },
    templateSelector: { matchLabels: { role: "migrations-template" } },
    command: ["migrate"],
  });
  await env.kube.createObject(appDeployment(env, "untemplated", { migrator: "untemplated" }));
  await check("untemplated", REASONS.TemplateNotFound);

  // PinFailed: an admission policy refuses to let the reconciler pin the gated pod's image.
  const policy = await denyImageChanges(env);
  t.teardown(() => policy.remove());
  await env.migrator("refused", { selector: { matchLabels: { app: "refused" } }, command: ["migrate"] });
  await env.kube.createObject(
    appDeployment(env, "refused", { migrator: "refused", labels: { [POLICY_LABEL.key]: POLICY_LABEL.value } }),
  );
  await check("refused", REASONS.PinFailed);
  await policy.remove();

  // Running, then Succeeded: a migration held until the test lets it finish.
  const held = await env.push(appImage("v1", { HOLD_FILE: holdFile }), "latest", "held");
  await env.migrator("held", { selector: { matchLabels: { app: "held" } }, command: ["migrate"] });
  await env.kube.createObject(
    appDeployment(env, "held", { migrator: "held", container: appContainer(env, env.ref("latest", "held")) }),
  );
  await check("held", REASONS.Running);
  writeFileSync(holdFile, "");
  await check("held", REASONS.Succeeded);
  await waitFor(async () => runningImages(await env.pods("app=held")).some((id) => id.endsWith(`@${held}`)), {
    what: "the held pod to be released on the migrated digest",
    timeoutMs: 120_000,
  });

  // Failed, then the retry action as Argo CD runs it: the script's object is written back to the API.
  await env.push(appImage("v1", { FAIL_FILE: failFile }), "latest", "failing");
  await env.migrator("failing", { selector: { matchLabels: { app: "failing" } }, command: ["migrate"] });
  await env.kube.createObject(
    appDeployment(env, "failing", { migrator: "failing", container: appContainer(env, env.ref("latest", "failing")) }),
  );
  const failed = await check("failing", REASONS.Failed);
  t.match(health(failed).message, failed.status?.currentJob ?? "no current Job", "the message names the Job");
  rmSync(failFile);
  const retried = runAction("retry", failed) as Migrator;
  await env.kube.request("PUT", `/apis/${API_VERSION}/namespaces/${env.namespace}/migrators/failing`, {
    body: retried,
  });
  const after = await env.waitReason("failing", REASONS.Succeeded, 180_000);
  t.equal(health(after).status, "Healthy", "the retry action reran the migration; Healthy");
  t.equal(after.kind, KIND);

  for (const reason of Object.values(REASONS)) {
    if (reason === REASONS.UnsupportedRuntime) continue;
    t.ok(reached.has(reason), `reached ${reason} on a live Migrator`);
  }
  if (record) {
    const tests = recorded.map((r) => ({ healthStatus: r.health, inputPath: r.file }));
    writeFileSync(
      path.join(RECORDED, "health_test.yaml"),
      `# Recorded by e2e/argocd/health.test.ts with DM_RECORD=1: live Migrators from the real control plane.\n${stringify({ tests })}`,
    );
  }
});
