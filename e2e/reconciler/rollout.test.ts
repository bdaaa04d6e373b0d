// The digest protocol end to end on the real node: a Deployment with a mutable tag, a Migrator, the
// chart-installed reconciler, the kubelet pulling from the node's registry whose tag moves (every
// push a real build with a new digest), PostgreSQL. What each app container ran is read from
// containerd, never from the reconciler.
import fs from "node:fs";
import t from "tap";
import { ANNOTATIONS, API_VERSION, KIND, pinnedDigest } from "@digest-migrations/shared";
import type { Container, KubeObject, Pod } from "@digest-migrations/shared";
import { STRATEGIC_MERGE_PATCH } from "../kit/client.ts";
import { restart } from "../pipeline/restart.ts";
import { waitFor } from "../kit/wait.ts";
import {
  appContainer,
  appDeployment,
  appImage,
  describeMigrator,
  jobsStarted,
  metric,
  observe,
  reconcilerEnv,
  record,
  runningImages,
  unmigratedStarts,
} from "./setup.ts";
import type { ReconcilerEnv } from "./setup.ts";

const SELECTOR = "app=web";

const PROBE_SELECTOR = "migrations.coderanger.net/role=probe";

function web(env: ReconcilerEnv, replicas = 2, app: Container = appContainer(env)): KubeObject {
  return appDeployment(env, "web", { migrator: "db", replicas, container: app });
}

/** `kubectl rollout restart deployment/web`. */
async function restartWeb(env: ReconcilerEnv): Promise<void> {
  await restart(env.kube, { namespace: env.namespace, name: "web" });
}

/** All live web pods run `digest` (status imageID) with the image pinned to it, and the rollout is done. */
async function waitRunning(env: ReconcilerEnv, digest: string, replicas = 2): Promise<Pod[]> {
  return waitFor(
    async () => {
      const pods = (await env.pods(SELECTOR)).filter((p) => p.metadata.deletionTimestamp === undefined);
      if (pods.length !== replicas) return undefined;
      const images = runningImages(pods);
      const pinned = pods.every((p) => pinnedDigest(p.spec.containers[0]?.image) === digest);
      return images.length === replicas && images.every((id) => id.endsWith(`@${digest}`)) && pinned ? pods : undefined;
    },
    { what: `web pods to run ${digest}`, timeoutMs: 120_000, describe: () => describeMigrator(env, "db") },
  );
}

/** A CPU quantity in millicores ("1m", "0.5", "2"); NaN when absent. */
function millicores(quantity: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(quantity ?? "");
  return m === null ? Number.NaN : Number(m[1]) * (m[2] === "m" ? 1 : 1000);
}

/** A memory quantity in bytes ("4Mi", "16M", "1024"); NaN when absent. */
function bytes(quantity: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(quantity ?? "");
  const scale: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 };
  return m === null ? Number.NaN : Number(m[1]) * (m[2] === undefined ? 1 : (scale[m[2]] ?? Number.NaN));
}

interface SecurityContext {
  runAsNonRoot?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { drop?: string[] };
  seccompProfile?: { type?: string };
}

t.test("first rollout, then a new push of the same tag", async (t) => {
  // One real node: the probe must be bound to it by name (the scheduler is not asked), run as the
  // gated pods' service account with their pull secret, and pull the way they do.
  const env = await reconcilerEnv(t);
  const probes = await record<Pod>(t, env, `/api/v1/namespaces/${env.namespace}/pods`, PROBE_SELECTOR);
  // A mutable tag other than `latest`, pulled Always: the apiserver would default a probe that did not
  // copy the gated container's pull policy to IfNotPresent.
  const tag = "main";
  const d1 = await env.push(appImage("v1"), tag);
  await env.kube.createObject({
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: "web", namespace: env.namespace },
  });
  // Credentials for the node's registry (which asks for none): the kubelet pulls with them.
  await env.kube.createObject({
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/dockerconfigjson",
    metadata: { name: "registry-credentials", namespace: env.namespace },
    stringData: {
      ".dockerconfigjson": JSON.stringify({
        auths: { [env.world.node.registry]: { auth: Buffer.from("ci:not-checked").toString("base64") } },
      }),
    },
  });
  // The ServiceAccount admission plugin refuses pods of an account whose token is not made yet.
  await waitFor(
    async () =>
      (
        (await env.kube.getObject<KubeObject & { secrets?: unknown[] }>("v1", "ServiceAccount", env.namespace, "web"))
          ?.secrets ?? []
      ).length > 0,
    { what: "the web ServiceAccount's token", timeoutMs: 30_000 },
  );
  const base = web(env, 2, { ...appContainer(env, env.ref(tag)), imagePullPolicy: "Always" });
  const template = (base.spec as { template: { spec: Pod["spec"] } }).template;
  template.spec = {
    ...template.spec,
    serviceAccountName: "web",
    imagePullSecrets: [{ name: "registry-credentials" }],
    tolerations: [{ key: "example.com/dedicated", operator: "Equal", value: "web", effect: "NoSchedule" }],
  };
  // The Deployment first: both gated pods exist and are bound before the Migrator (and so any probe).
  await env.kube.createObject(base);
  const gated = await waitFor(
    async () => {
      const pods = await env.pods(SELECTOR);
      return pods.length === 2 && pods.every((p) => p.spec.nodeName === env.nodeName) ? pods : undefined;
    },
    { what: "both web pods to be created and bound to the node", timeoutMs: 60_000 },
  );
  const migrator = await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });

  // Gated pods → probe → one Job pinned to D1 → recorded → released.
  const m1 = await env.waitReady("db", d1);
  t.equal(m1.status?.lastSuccessfulMigration, d1, "lastSuccessfulMigration is the digest");
  t.equal(m1.status?.currentDigest, d1);
  const jobs1 = await env.jobs();
  t.equal(jobs1.length, 1, "one Job");
  const job1 = jobs1[0]!;
  const spec1 = (job1.spec as { template: { spec: Pod["spec"] } }).template.spec;
  t.equal(spec1.containers[0]?.image, `${env.ref(tag)}@${d1}`, "the Job runs the pinned digest");
  t.equal(job1.metadata.annotations?.[ANNOTATIONS.digest], d1, "the Job is annotated with the digest");
  const running1 = await waitRunning(env, d1);
  t.same(
    running1.map((p) => p.metadata.uid).sort(),
    gated.map((p) => p.metadata.uid).sort(),
    "the gated pods themselves were released",
  );
  // The probe that resolved D1 is removed once its pods are pinned, and its lifetime recorded.
  const resolvedProbes = await waitFor(
    async () => metric(env, "digest_migrations_probe_duration_seconds_count", { result: "resolved" }),
    { what: "a resolved probe in digest_migrations_probe_duration_seconds", timeoutMs: 30_000 },
  );
  t.ok(resolvedProbes >= 1, "probe duration observed with result=resolved");
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1"],
    "the migration ran exactly once",
  );
  await waitFor(async () => probes.deleted.size === probes.seen.size && (await env.pods(PROBE_SELECTOR)).length === 0, {
    what: "probe pods to be deleted after use",
    timeoutMs: 30_000,
  });

  // One probe for both gated pods, reproducing how they pull, on their node, owned by the Migrator. The
  // kubelet pulled its image and reported the digest (a probe's container cannot start: StartError).
  const all = probes.all();
  t.equal(all.length, 1, "exactly one probe pod was created for both gated pods");
  const probe = all[0]!;
  t.ok(probes.deleted.has(probe.metadata.uid ?? ""), "it was deleted after use");
  const gatedSpec = gated[0]!.spec;
  const gatedApp = gatedSpec.containers.find((c) => c.name === "app")!;
  t.ok(
    gated.every(
      (p) => Date.parse(p.metadata.creationTimestamp ?? "") <= Date.parse(probe.metadata.creationTimestamp ?? ""),
    ),
    "the probe started after both gated pods existed",
  );
  t.equal(probe.spec.nodeName, env.nodeName, "bound to the gated pods' node");
  const probeStatus = probe.status?.containerStatuses?.[0];
  t.match(
    probeStatus,
    {
      imageID: `${env.images.repository("app")}@${d1}`,
      state: { terminated: { reason: "StartError", exitCode: 128 } },
    },
    "the kubelet pulled the image and reported its digest (StartError, exit 128)",
  );
  t.equal(probe.spec.serviceAccountName, "web", "with the gated pods' service account");
  t.same(probe.spec.imagePullSecrets, [{ name: "registry-credentials" }], "with the gated pods' imagePullSecrets");
  t.same(probe.spec.tolerations, gatedSpec.tolerations, "with the gated pods' tolerations");
  t.ok(
    probe.spec.tolerations?.some((tol) => tol.key === "example.com/dedicated"),
    "including the template's own toleration",
  );
  const probeContainer = probe.spec.containers[0]!;
  t.equal(probe.spec.containers.length, 1, "one container");
  t.equal(probeContainer.image, gatedApp.image, "the gated container's image");
  t.equal(gatedApp.imagePullPolicy, "Always");
  t.equal(probeContainer.imagePullPolicy, gatedApp.imagePullPolicy, "the gated container's pull policy");
  const sc = (probeContainer.securityContext ?? {}) as SecurityContext;
  const podSc = (probe.spec.securityContext ?? {}) as SecurityContext;
  t.ok(sc.runAsNonRoot === true || (podSc.runAsNonRoot === true && sc.runAsNonRoot !== false), "runAsNonRoot");
  t.equal(sc.allowPrivilegeEscalation, false, "allowPrivilegeEscalation false");
  t.same(sc.capabilities?.drop, ["ALL"], "capabilities drop ALL");
  t.equal((sc.seccompProfile ?? podSc.seccompProfile)?.type, "RuntimeDefault", "seccompProfile RuntimeDefault");
  const resources = (probeContainer.resources ?? {}) as Record<string, Record<string, string> | undefined>;
  for (const kind of ["requests", "limits"]) {
    const r = resources[kind] ?? {};
    t.ok(millicores(r["cpu"]) <= 100, `small cpu ${kind} (${r["cpu"]})`);
    t.ok(bytes(r["memory"]) <= 64 * 1024 ** 2, `small memory ${kind} (${r["memory"]})`);
  }
  t.match(
    probe.metadata.ownerReferences,
    [{ apiVersion: API_VERSION, kind: KIND, name: "db", uid: migrator.metadata.uid, controller: true }],
    "owned by the Migrator",
  );
  t.equal(probe.metadata.ownerReferences?.length, 1, "and only by it");

  // CI pushes a new tag; the Deployment is restarted: exactly one more Job, for D2.
  const d2 = await env.push(appImage("v2"), tag);
  t.not(d2, d1);
  await restartWeb(env);
  const m2 = await env.waitReady("db", d2);
  t.equal(m2.status?.lastSuccessfulMigration, d2);
  t.same(
    m2.status?.migratedDigests?.map((r) => r.digest),
    [d2, d1],
    "history, newest first",
  );
  await waitRunning(env, d2);
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1", "v2"],
    "one more migration, for D2",
  );
  const jobs2 = await waitFor(
    async () => {
      const jobs = await env.jobs();
      return jobs.length === 1 ? jobs : undefined;
    },
    { what: "the stale D1 Job to be deleted", timeoutMs: 30_000 },
  );
  t.equal(jobs2[0]?.metadata.annotations?.[ANNOTATIONS.digest], d2, "the D2 Job stays for its logs");
  t.ok((await env.waitEvents("Succeeded")).length >= 1, "an Event for the transition");
  t.same(await unmigratedStarts(env, "web-", [d1, d2]), [], "every app container started on a migrated digest");
});

/** Migration Jobs the controller created for Migrator `db` of this test's namespace. */
const started = (env: ReconcilerEnv): Promise<number> => jobsStarted(env, "db");

t.test("a moving tag during a migration, old and new pods together, and a rollback", async (t) => {
  const env = await reconcilerEnv(t);
  const hold = env.flag("go");
  const d1 = await env.push(appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(web(env));
  await env.waitReady("db", d1);
  await waitRunning(env, d1);
  t.equal(await started(env), 1);

  // D2's migration is held, so old D1 pods and gated D2 pods live side by side.
  const d2 = await env.push(appImage("v2", { HOLD_FILE: hold }));
  await restartWeb(env);
  await waitFor(
    async () => {
      const m = await env.getMigrator("db");
      return m?.status?.currentDigest === d2 && m.status.conditions?.some((c) => c.reason === "Running");
    },
    { what: "the D2 migration to run", timeoutMs: 120_000, describe: () => describeMigrator(env, "db") },
  );
  // The tag moves again while D2 migrates.
  const d3 = await env.push(appImage("v3"));
  // An observation window over several revisits: the wanted digest never flaps back to D1 (or on to
  // D3, which no pod runs yet) and no other Job starts.
  const wantedSeen = new Set<string | undefined>();
  const jobDigests = new Set<string | undefined>();
  const visits = await observe(env, "db", 6000, async () => {
    wantedSeen.add((await env.getMigrator("db"))?.status?.currentDigest);
    for (const job of await env.jobs()) jobDigests.add(job.metadata.annotations?.[ANNOTATIONS.digest]);
  });
  t.ok(visits >= 4, `the window spans several revisits of the Migrator (${visits} reconciles)`);
  t.same([...wantedSeen], [d2], "the newest pods' digest stays wanted");
  t.notOk(jobDigests.has(d3), "no Job for D3 yet");
  t.equal(await started(env), 2, "exactly one Job for D2");
  fs.writeFileSync(hold, "");
  await env.waitReady("db", d2);
  // The pod released first was pinned to D2 before the tag moved, so it runs D2. The rollout's
  // next pod is created after the move: its node resolves D3, which is migrated after D2 and
  // before that pod starts — every pod runs a migrated digest, never an unmigrated one.
  const mixed = await waitFor(
    async () => {
      const pods = (await env.pods(SELECTOR)).filter((p) => p.metadata.deletionTimestamp === undefined);
      const images = runningImages(pods);
      const ok = pods.length === 2 && images.length === 2 && images.every((id) => id.endsWith(d2) || id.endsWith(d3));
      return ok ? images : undefined;
    },
    { what: "the D2 rollout to finish", timeoutMs: 180_000, describe: () => describeMigrator(env, "db") },
  );
  t.ok(
    mixed.some((id) => id.endsWith(d2)),
    "the pod released during the move runs D2, as pinned",
  );

  // D3 is handled after D2: restarted pods resolve the tag's new digest; one Job for D3 in all.
  await restartWeb(env);
  await env.waitReady("db", d3);
  await waitRunning(env, d3);
  t.equal(await started(env), 3, "one Job per digest");
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1", "v2", "v3"],
    "D3 migrated after D2",
  );

  // Rollback: `latest` points at D1 again; D1 is in the history, so no Job and immediate release.
  await env.images.tag("app", "latest", d1);
  await restartWeb(env);
  await waitRunning(env, d1);
  t.equal(await started(env), 3, "no Job for a rollback");
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1", "v2", "v3"],
    "each digest migrated exactly once",
  );
  const m = await env.waitReason("db", "Succeeded");
  t.equal(m.status?.currentDigest, d1);
  t.same(await unmigratedStarts(env, "web-", [d1, d2, d3]), [], "every app container started on a migrated digest");
});

t.test("a rollback of the pod template to an image pinned by digest", async (t) => {
  const env = await reconcilerEnv(t);
  const d1 = await env.push(appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(web(env));
  await env.waitReady("db", d1);
  await waitRunning(env, d1);
  const d2 = await env.push(appImage("v2"));
  await restartWeb(env);
  await env.waitReady("db", d2);
  await waitRunning(env, d2);
  t.equal(await started(env), 2, "one Job per digest");

  // `kubectl rollout undo` to a template that pinned D1 by digest: `latest` still means D2, so pods
  // running D1 come from the template's digest, which was migrated before — no Job, immediate release.
  await env.kube.patchObject(
    "apps/v1",
    "Deployment",
    env.namespace,
    "web",
    { spec: { template: { spec: { containers: [{ name: "app", image: `${env.images.repository("app")}@${d1}` }] } } } },
    STRATEGIC_MERGE_PATCH,
  );
  const pods = await waitRunning(env, d1);
  t.ok(
    pods.every((p) => p.spec.containers[0]?.image === `${env.images.repository("app")}@${d1}`),
    "the pods run the template's pinned image",
  );
  const m = await waitFor(
    async () => {
      const current = await env.getMigrator("db");
      const ready = current?.status?.conditions?.find((c) => c.type === "Ready");
      return current?.status?.currentDigest === d1 && ready?.reason === "Succeeded" ? current : undefined;
    },
    { what: "the Migrator to report D1 Succeeded", timeoutMs: 120_000, describe: () => describeMigrator(env, "db") },
  );
  t.equal(m.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", "Ready");
  t.equal(await started(env), 2, "no Job for a template rollback");
  t.notOk(
    (await env.jobs()).some((j) => j.metadata.annotations?.[ANNOTATIONS.digest] === d1),
    "no Job for D1 exists",
  );
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1", "v2"],
    "each digest migrated exactly once",
  );
  t.same(await unmigratedStarts(env, "web-", [d1, d2]), [], "every app container started on a migrated digest");
});
