// Self-tests of the e2e harness against the real control plane: the node emulator must behave
// like a kubelet for everything the product's end-to-end tests rely on.
import fs from "node:fs";
import path from "node:path";
import t from "tap";
import type { KubeObject, Pod } from "@digest-migrations/shared";
import { testEnv } from "./env.ts";
import type { TestEnv } from "./env.ts";
import { inlineNodeImage, scriptImage } from "./images.ts";
import { condition, deployment, job, pod } from "./objects.ts";
import { waitFor } from "../kit/wait.ts";
import { paths, STRATEGIC_MERGE_PATCH } from "../kit/client.ts";
import type { ObjectList } from "../kit/client.ts";

const SQL = path.join(import.meta.dirname, "fixtures/sql.ts");

// A long-running "server": exits 0 on SIGTERM, then says who it is (so a test that saw the line
// knows SIGTERM is handled).
const SERVE = `
process.on("SIGTERM", () => { console.log("stopping"); process.exit(0); });
console.log("serving", process.env.VERSION, process.env.POD_NAME);
setInterval(() => {}, 1000);`;
// Waits for the file named by $GATE to exist, then exits 0.
const GATE = `
const fs = require("node:fs");
const timer = setInterval(() => { if (fs.existsSync(process.env.GATE)) { clearInterval(timer); console.log("gate open"); } }, 50);`;

function webImage(version: string) {
  return inlineNodeImage({ web: SERVE, gate: GATE }, { env: { VERSION: version } });
}

const podEnv = [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }];

async function pods(env: TestEnv, labelSelector?: string): Promise<Pod[]> {
  const list = await env.kube.request<ObjectList<Pod>>("GET", paths.pods(env.namespace), { query: { labelSelector } });
  return list.items;
}

async function getPod(env: TestEnv, name: string): Promise<Pod | undefined> {
  return env.kube.find<Pod>(paths.pod(env.namespace, name));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const describePods = (env: TestEnv) => async () =>
  JSON.stringify((await pods(env)).map((p) => ({ name: p.metadata.name, node: p.spec.nodeName, status: p.status })));

t.test("a Deployment rolls out, its pods run as real processes, a rolling update replaces them", async (t) => {
  const env = await testEnv(t);
  env.registry.push("registry.example/web", "v1", webImage("v1"));
  const v2 = env.registry.push("registry.example/web", "v2", webImage("v2"));
  await env.kube.createObject(
    deployment(
      env.namespace,
      "web",
      [{ name: "web", image: "registry.example/web:v1", command: ["web"], env: podEnv }],
      {
        replicas: 2,
      },
    ),
  );
  const available = async (image: string) => {
    const d = await env.kube.getObject<KubeObject>("apps/v1", "Deployment", env.namespace, "web");
    const s = d?.status as { availableReplicas?: number; updatedReplicas?: number; replicas?: number } | undefined;
    const ps = await pods(env, "app=web");
    return (
      s?.availableReplicas === 2 &&
      s.updatedReplicas === 2 &&
      s.replicas === 2 &&
      ps.length === 2 &&
      ps.every((p) => p.spec.containers[0]?.image === image && p.status?.phase === "Running")
    );
  };
  await waitFor(() => available("registry.example/web:v1"), {
    what: "web v1 to roll out",
    describe: describePods(env),
  });

  const v1Pods = await pods(env, "app=web");
  for (const p of v1Pods) {
    const s = p.status?.containerStatuses?.[0];
    t.ok(s?.ready && s.started && s.state?.running, `${p.metadata.name} is running and ready`);
    t.match(s?.imageID, /^registry\.example\/web@sha256:[0-9a-f]{64}$/);
    t.equal(condition(p, "Ready")?.status, "True");
    t.match(p.status?.podIP, /^127\./);
    await waitFor(
      () => env.node.logs(env.namespace, p.metadata.name!, "web").includes(`serving v1 ${p.metadata.name}`),
      {
        what: `log line of ${p.metadata.name}`,
      },
    );
  }
  const v1Starts = env.node.startsMatching({ container: "web", ok: true });
  t.equal(v1Starts.length, 2);
  t.ok(
    v1Starts.every((s) => s.pid !== undefined && alive(s.pid)),
    "the processes are alive",
  );

  await env.kube.patchObject(
    "apps/v1",
    "Deployment",
    env.namespace,
    "web",
    {
      spec: { template: { spec: { containers: [{ name: "web", image: "registry.example/web:v2" }] } } },
    },
    STRATEGIC_MERGE_PATCH,
  );
  await waitFor(() => available("registry.example/web:v2"), { what: "web v2 to roll out", timeoutMs: 60_000 });
  await waitFor(async () => (await pods(env, "app=web")).length === 2, { what: "old pods to be deleted" });
  const v2Pods = await pods(env, "app=web");
  t.notOk(
    v2Pods.some((p) => v1Pods.some((o) => o.metadata.uid === p.metadata.uid)),
    "every old pod was replaced",
  );
  t.ok(v2Pods.every((p) => p.status?.containerStatuses?.[0]?.imageID === `registry.example/web@${v2}`));
  await waitFor(() => v1Starts.every((s) => !alive(s.pid!)), { what: "old processes to stop" });
  t.match(env.node.logs(env.namespace, v1Pods[0]!.metadata.name!, "web"), "stopping", "old pods got SIGTERM");
});

t.test("deleting a Deployment garbage-collects its pods and stops their processes", async (t) => {
  const env = await testEnv(t);
  env.registry.push("registry.example/web", "v1", webImage("v1"));
  await env.kube.createObject(
    deployment(env.namespace, "gc", [{ name: "web", image: "registry.example/web:v1", command: ["web"] }], {
      replicas: 2,
    }),
  );
  await waitFor(async () => (await pods(env, "app=gc")).filter((p) => p.status?.phase === "Running").length === 2, {
    what: "2 running pods",
    describe: describePods(env),
  });
  const started = env.node.startsMatching({ ok: true });
  await env.kube.deleteObject("apps/v1", "Deployment", env.namespace, "gc");
  await waitFor(async () => (await pods(env, "app=gc")).length === 0, {
    what: "pods to be garbage-collected",
    timeoutMs: 60_000,
  });
  await waitFor(() => started.every((s) => !alive(s.pid!)), { what: "processes to stop" });
  t.pass("pods and processes are gone");
});

t.test("a Job runs a real process against PostgreSQL and completes; a failing Job fails", async (t) => {
  const env = await testEnv(t);
  const db = env.database!;
  await env.postgres!.query(db.name, "create table runs (pod text)");
  env.registry.push("registry.example/tools", "1.0", scriptImage({ sql: SQL }));
  const dbEnv = [{ name: "DATABASE_URL", value: db.url }, ...podEnv];
  await env.kube.createObject(
    job(env.namespace, "ok", [
      {
        name: "sql",
        image: "registry.example/tools:1.0",
        command: ["sql", "insert into runs values ('$(POD_NAME)')"],
        env: dbEnv,
      },
    ]),
  );
  await env.kube.createObject(
    job(env.namespace, "bad", [
      { name: "sql", image: "registry.example/tools:1.0", command: ["sql", "insert into nope values (1)"], env: dbEnv },
    ]),
  );
  const jobCondition = (name: string, type: string) => async () =>
    condition(await env.kube.getObject("batch/v1", "Job", env.namespace, name), type)?.status === "True";
  await waitFor(jobCondition("ok", "Complete"), { what: "job ok to complete", describe: describePods(env) });
  await waitFor(jobCondition("bad", "Failed"), { what: "job bad to fail", describe: describePods(env) });

  const rows = await env.postgres!.query<{ pod: string }>(db.name, "select pod from runs");
  t.equal(rows.length, 1);
  t.match(rows[0]?.pod, /^ok-/, "the pod's name reached the process through the downward API");
  const [okPod] = await pods(env, "job-name=ok");
  t.equal(okPod?.status?.phase, "Succeeded");
  t.equal(okPod?.status?.containerStatuses?.[0]?.state?.terminated?.reason, "Completed");
  const [badPod] = await pods(env, "job-name=bad");
  t.equal(badPod?.status?.phase, "Failed");
  t.same(badPod?.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 1);
  t.match(env.node.logs(env.namespace, badPod!.metadata.name!, "sql"), 'relation "nope" does not exist');
});

t.test("a moved tag reaches new pods only; IfNotPresent keeps a node's cached old digest", async (t) => {
  const env = await testEnv(t, { nodes: ["a", "b"] });
  const [nodeA, nodeB] = env.nodeNames as [string, string];
  const old = env.registry.push("registry.example/app", "latest", webImage("old"));
  const run = async (name: string, nodeName: string, imagePullPolicy?: string) => {
    await env.kube.createObject(
      pod(env.namespace, name, {
        nodeName,
        containers: [
          {
            name: "app",
            image: "registry.example/app:latest",
            command: ["web"],
            ...(imagePullPolicy ? { imagePullPolicy } : {}),
          },
        ],
      }),
    );
    const p = await waitFor(
      async () => {
        const got = await getPod(env, name);
        return got?.status?.phase === "Running" ? got : undefined;
      },
      { what: `pod ${name} to run`, describe: describePods(env) },
    );
    return p.status?.containerStatuses?.[0]?.imageID;
  };
  t.equal(await run("first", nodeA), `registry.example/app@${old}`);
  const fresh = env.registry.push("registry.example/app", "latest", webImage("new"));
  t.equal(await run("on-b", nodeB), `registry.example/app@${fresh}`, "a new pod gets the new digest");
  t.equal(
    (await getPod(env, "first"))?.status?.containerStatuses?.[0]?.imageID,
    `registry.example/app@${old}`,
    "the old pod keeps running the old digest",
  );
  t.equal(
    await run("cached", nodeA, "IfNotPresent"),
    `registry.example/app@${old}`,
    "IfNotPresent uses node a's old latest",
  );
  t.equal(await run("always", nodeA, "Always"), `registry.example/app@${fresh}`, "Always re-resolves the tag");
  const first = await getPod(env, "first");
  t.equal(first?.spec.containers[0]?.imagePullPolicy, "Always", "the apiserver defaulted the policy for :latest");
  t.equal(env.node.pullCount({ node: nodeA, pulledOnly: true }), 2, "node a downloaded two digests");
  t.equal(env.node.pullCount({ node: nodeB }), 1);
});

t.test("pod lifecycle: init order, images read at start, StartError, pull errors, deletion", async (t) => {
  const env = await testEnv(t);
  const d1 = env.registry.push("registry.example/app", "latest", webImage("one"));
  const gateFile = path.join(env.node.workDir, "gate-open");

  await t.test(
    "init containers run in order; the app starts with the image its spec names at that moment",
    async (t) => {
      await env.kube.createObject(
        pod(env.namespace, "gated", {
          initContainers: [
            {
              name: "first",
              image: "registry.example/app:latest",
              command: ["gate"],
              env: [{ name: "GATE", value: "/" }],
            },
            {
              name: "wait",
              image: "registry.example/app:latest",
              command: ["gate"],
              env: [{ name: "GATE", value: gateFile }],
            },
          ],
          containers: [{ name: "app", image: "registry.example/app:latest", command: ["web"] }],
        }),
      );
      await waitFor(async () => (await getPod(env, "gated"))?.status?.initContainerStatuses?.[1]?.state?.running, {
        what: "the second init container to run",
        describe: describePods(env),
      });
      const blocked = await getPod(env, "gated");
      t.equal(blocked?.status?.phase, "Pending");
      t.equal(blocked?.status?.initContainerStatuses?.[0]?.state?.terminated?.reason, "Completed");
      t.equal(blocked?.status?.containerStatuses?.[0]?.state?.waiting?.reason, "PodInitializing");
      t.equal(blocked?.status?.containerStatuses?.[0]?.imageID, "", "a gated app container has no imageID");
      t.equal(condition(blocked, "Initialized")?.status, "False");

      // CI moves the tag; a controller pins the gated pod to the old digest, then the gate opens.
      env.registry.push("registry.example/app", "latest", webImage("two"));
      await env.kube.strategicPatch(paths.pod(env.namespace, "gated"), {
        spec: { containers: [{ name: "app", image: `registry.example/app:latest@${d1}` }] },
      });
      fs.writeFileSync(gateFile, "");
      const running = await waitFor(
        async () => {
          const p = await getPod(env, "gated");
          return p?.status?.phase === "Running" ? p : undefined;
        },
        { what: "gated pod to run" },
      );
      t.equal(running.status?.containerStatuses?.[0]?.imageID, `registry.example/app@${d1}`, "the pinned digest ran");
      t.equal(condition(running, "Initialized")?.status, "True");
      await waitFor(() => env.node.logs(env.namespace, "gated", "app").includes("serving one"), { what: "app log" });
    },
  );

  await t.test("a command missing from the image ends StartError with the imageID", async (t) => {
    await env.kube.createObject(
      pod(env.namespace, "probe", {
        restartPolicy: "Never",
        containers: [{ name: "probe", image: "registry.example/app:latest", command: ["does-not-exist"] }],
      }),
    );
    const p = await waitFor(
      async () => {
        const got = await getPod(env, "probe");
        return got?.status?.phase === "Failed" ? got : undefined;
      },
      { what: "probe pod to fail", describe: describePods(env) },
    );
    const s = p.status?.containerStatuses?.[0];
    t.equal(s?.state?.terminated?.reason, "StartError");
    t.equal(s?.state?.terminated?.exitCode, 128);
    t.match(s?.state?.terminated?.message, 'exec: "does-not-exist": executable file not found in $PATH');
    t.equal(s?.imageID, `registry.example/app@${env.registry.resolve("registry.example/app:latest")}`);
  });

  await t.test("an unknown image waits in ImagePullBackOff until it is pushed", async (t) => {
    await env.kube.createObject(
      pod(env.namespace, "later", {
        containers: [{ name: "app", image: "registry.example/later:1", command: ["web"] }],
      }),
    );
    const waiting = await waitFor(
      async () => {
        const reason = (await getPod(env, "later"))?.status?.containerStatuses?.[0]?.state?.waiting?.reason;
        return reason === "ErrImagePull" || reason === "ImagePullBackOff" ? reason : undefined;
      },
      { what: "a pull error" },
    );
    t.ok(waiting);
    env.registry.push("registry.example/later", "1", webImage("later"));
    await waitFor(async () => (await getPod(env, "later"))?.status?.phase === "Running", {
      what: "the pod to run once the image exists",
    });
  });

  await t.test("deleting a pod stops its process and removes it", async (t) => {
    const [start] = env.node.startsMatching({ pod: "gated", container: "app", ok: true });
    await env.kube.delete(paths.pod(env.namespace, "gated"));
    await waitFor(async () => !(await getPod(env, "gated")), { what: "pod gated to be gone" });
    t.notOk(alive(start!.pid!), "the process is stopped");
    t.match(env.node.logs(env.namespace, "gated", "app"), "stopping");
  });
});

t.test("the emulator recovers its watches after an apiserver restart", async (t) => {
  const env = await testEnv(t, { postgres: false });
  env.registry.push("registry.example/app", "latest", webImage("x"));
  const gateFile = path.join(env.node.workDir, "restart-gate");
  await env.kube.createObject(
    pod(env.namespace, "across", {
      restartPolicy: "Never",
      containers: [
        {
          name: "gate",
          image: "registry.example/app:latest",
          command: ["gate"],
          env: [{ name: "GATE", value: gateFile }],
        },
      ],
    }),
  );
  await waitFor(async () => (await getPod(env, "across"))?.status?.phase === "Running", { what: "pod across to run" });
  const listsBefore = env.node.lists;

  if (env.cluster.stopApiserver && env.cluster.startApiserver) {
    await env.cluster.stopApiserver();
    // The process finishes while the apiserver is down: the status write must be retried.
    fs.writeFileSync(gateFile, "");
    await waitFor(
      () =>
        env.node.startsMatching({ pod: "across" }).length === 1 &&
        env.node.logs(env.namespace, "across", "gate").includes("gate open"),
      {
        what: "the container to finish during the outage",
      },
    );
    await env.cluster.startApiserver();
  } else {
    // A cluster the harness did not start (DM_KUBECONFIG): drop the watch connections instead.
    env.node.disconnectWatches();
    fs.writeFileSync(gateFile, "");
  }
  await waitFor(async () => (await getPod(env, "across"))?.status?.phase === "Succeeded", {
    what: "the status written after the restart",
    timeoutMs: 60_000,
  });
  await env.kube.createObject(
    pod(env.namespace, "after", {
      containers: [{ name: "app", image: "registry.example/app:latest", command: ["web"] }],
    }),
  );
  await waitFor(async () => (await getPod(env, "after"))?.status?.phase === "Running", {
    what: "a pod created after the restart to run",
    timeoutMs: 60_000,
  });
  if (env.cluster.stopApiserver) t.ok(env.node.lists > listsBefore, "the watches relisted");
});
