// PodRunner against an in-memory API stub: the order of container states, the phase, StartError
// with imageID, restarts, and graceful deletion — with real processes.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import type { Pod, PodStatus } from "@digest-migrations/shared";
import type { KubeClient } from "../kit/client.ts";
import { PodRunner } from "./pod-runner.ts";
import type { StartRecord } from "./pod-runner.ts";
import { NodeImages, Registry } from "./registry.ts";
import { waitFor } from "../kit/wait.ts";
import { readFixtures, summarize } from "../node/kubelet-record.ts";

const run = (source: string): string[] => [process.execPath, "-e", source];

function harness(t: Test, pod: Pod) {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-runner-"));
  t.teardown(() => fs.rmSync(workDir, { recursive: true, force: true }));
  const registry = new Registry();
  const digest = registry.push("registry.example/app", "latest", {
    commands: {
      ok: run("console.log('ran', process.env.WHO)"),
      fail: run("process.exit(3)"),
      serve: run("process.on('SIGTERM', () => process.exit(0)); console.log('ready'); setInterval(() => {}, 1000)"),
    },
  });
  const statuses: PodStatus[] = [];
  let current: Pod | undefined = structuredClone(pod);
  let deleted = false;
  const client = {
    get: async () => structuredClone(current),
    mergePatch: async (_p: string, patch: { status: PodStatus }) => {
      statuses.push(patch.status);
      if (current) current.status = patch.status;
      return structuredClone(current);
    },
    delete: async () => {
      deleted = true;
      current = undefined;
    },
  } as unknown as KubeClient;
  const starts: StartRecord[] = [];
  const runner = new PodRunner(structuredClone(pod), {
    client,
    node: { name: "n1", hostIP: "127.0.0.1", images: new NodeImages(registry) },
    podIP: "127.9.0.1",
    workDir,
    timing: { pullBackoffMs: 20, pullBackoffMaxMs: 50, restartBackoffMs: 20, restartBackoffMaxMs: 50 },
    env: { secret: async () => undefined, configMap: async () => undefined },
    recordPull: () => undefined,
    recordStart: (s) => starts.push(s),
    log: () => undefined,
    finished: () => undefined,
  });
  t.teardown(() => runner.shutdown());
  return {
    runner,
    digest,
    statuses,
    starts,
    last: () => statuses.at(-1),
    current: () => current,
    isDeleted: () => deleted,
  };
}

const base = (spec: Pod["spec"]): Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "p", namespace: "ns", uid: "uid-1" },
  spec,
});

t.test("init then app, Never: states in order, Succeeded, logs", async (t) => {
  const h = harness(
    t,
    base({
      restartPolicy: "Never",
      initContainers: [
        { name: "init", image: "registry.example/app:latest", command: ["ok"], env: [{ name: "WHO", value: "init" }] },
      ],
      containers: [
        { name: "app", image: "registry.example/app:latest", command: ["ok"], env: [{ name: "WHO", value: "app" }] },
      ],
    }),
  );
  h.runner.start();
  await waitFor(() => h.last()?.phase === "Succeeded", { what: "Succeeded" });
  const appStates = h.statuses.map((s) => Object.keys(s.containerStatuses?.[0]?.state ?? {})[0]);
  const initStates = h.statuses.map((s) => Object.keys(s.initContainerStatuses?.[0]?.state ?? {})[0]);
  t.equal(appStates[0], "waiting");
  t.equal(appStates.at(-1), "terminated");
  const firstAppRun = appStates.indexOf("running");
  const initDone = initStates.indexOf("terminated");
  t.ok(firstAppRun < 0 || initDone <= firstAppRun, "the app never runs before the init container finished");
  const final = h.last()!;
  t.equal(final.containerStatuses?.[0]?.imageID, `registry.example/app@${h.digest}`);
  t.equal(final.containerStatuses?.[0]?.image, "registry.example/app:latest");
  t.equal(final.initContainerStatuses?.[0]?.state?.terminated?.reason, "Completed");
  t.same(
    h.starts.map((s) => s.container),
    ["init", "app"],
  );
  t.match(fs.readFileSync(h.runner.logFile("app", 0), "utf8"), "ran app");
});

t.test("StartError keeps the imageID; Never → Failed", async (t) => {
  const h = harness(
    t,
    base({
      restartPolicy: "Never",
      containers: [{ name: "c", image: "registry.example/app:latest", command: ["nope"] }],
    }),
  );
  h.runner.start();
  await waitFor(() => h.last()?.phase === "Failed", { what: "Failed" });
  const s = h.last()?.containerStatuses?.[0];
  t.equal(s?.state?.terminated?.reason, "StartError");
  t.equal(s?.state?.terminated?.exitCode, 128);
  t.equal(s?.imageID, `registry.example/app@${h.digest}`);
  t.equal(h.starts[0]?.ok, false);
});

t.test("OnFailure restarts a failing container with backoff", async (t) => {
  const h = harness(
    t,
    base({
      restartPolicy: "OnFailure",
      containers: [{ name: "c", image: "registry.example/app:latest", command: ["fail"] }],
    }),
  );
  h.runner.start();
  await waitFor(() => (h.last()?.containerStatuses?.[0]?.restartCount ?? 0) >= 2, { what: "two restarts" });
  t.ok(h.statuses.some((s) => s.containerStatuses?.[0]?.state?.waiting?.reason === "CrashLoopBackOff"));
  t.ok(h.statuses.some((s) => s.containerStatuses?.[0]?.lastState?.terminated?.exitCode === 3));
  t.not(h.last()?.phase, "Failed");
});

t.test("deletion: SIGTERM, final status, delete with grace 0", async (t) => {
  const pod = base({ containers: [{ name: "c", image: "registry.example/app:latest", command: ["serve"] }] });
  const h = harness(t, pod);
  h.runner.start();
  await waitFor(() => h.last()?.phase === "Running", { what: "Running" });
  t.equal(h.last()?.containerStatuses?.[0]?.ready, true);
  // The process handles SIGTERM once it said so.
  await waitFor(
    () =>
      fs.existsSync(h.runner.logFile("c", 0)) && fs.readFileSync(h.runner.logFile("c", 0), "utf8").includes("ready"),
    {
      what: "the process to install its SIGTERM handler",
    },
  );
  h.runner.update({
    ...h.current()!,
    metadata: { ...pod.metadata, deletionTimestamp: "now", deletionGracePeriodSeconds: 5 },
  });
  await waitFor(() => h.isDeleted(), { what: "the pod to be deleted" });
  t.equal(h.last()?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0, "the process exited on SIGTERM");
});

t.test("an app container whose image changes while running is restarted with the new image", async (t) => {
  const pod = base({ containers: [{ name: "c", image: "registry.example/app:latest", command: ["serve"] }] });
  const h = harness(t, pod);
  h.runner.start();
  await waitFor(() => h.last()?.phase === "Running", { what: "Running" });
  const pinned = `registry.example/app:latest@${h.digest}`;
  h.current()!.spec.containers[0]!.image = pinned;
  h.runner.update(structuredClone(h.current()!));
  await waitFor(() => h.starts.length === 2 && h.last()?.containerStatuses?.[0]?.state?.running, { what: "a restart" });
  t.equal(h.starts[1]?.image, pinned);
  t.equal(h.last()?.containerStatuses?.[0]?.restartCount, 1);
});

t.test(
  "a pin patched into a pending pod shows in the gated container's status image, as the kubelet reports it",
  async (t) => {
    const pod = base({
      initContainers: [{ name: "init", image: "registry.example/app:latest", command: ["serve"] }],
      containers: [{ name: "app", image: "registry.example/app:latest", command: ["serve"] }],
    });
    const h = harness(t, pod);
    h.runner.start();
    await waitFor(() => h.last()?.initContainerStatuses?.[0]?.state?.running, { what: "the init container to run" });
    t.equal(h.last()?.containerStatuses?.[0]?.image, "registry.example/app:latest");
    t.equal(h.last()?.containerStatuses?.[0]?.state?.waiting?.reason, "PodInitializing");
    const pinned = `registry.example/app:latest@${h.digest}`;
    h.current()!.spec.containers[0]!.image = pinned;
    h.runner.update(structuredClone(h.current()!));
    await waitFor(() => h.last()?.containerStatuses?.[0]?.image === pinned, { what: "the status to show the pin" });
    t.equal(h.last()?.containerStatuses?.[0]?.imageID, "", "still not created");
    t.equal(h.last()?.containerStatuses?.[0]?.state?.waiting?.reason, "PodInitializing");
  },
);

t.test(
  "the emulator writes what the real kubelet was recorded writing (shared/src/testdata/kubelet-1.20)",
  async (t) => {
    const recorded = readFixtures();
    const same = (status: PodStatus | undefined, file: string): void => {
      const fixture = recorded[file];
      if (!fixture) throw new Error(`no recording ${file}`);
      t.same(summarize({ ...fixture, status: status ?? {} }), summarize(fixture), `${file}: ${fixture.situation}`);
    };
    const probe = harness(
      t,
      base({
        restartPolicy: "Never",
        containers: [
          { name: "probe", image: "registry.example/app:latest", imagePullPolicy: "Always", command: ["nope"] },
        ],
      }),
    );
    probe.runner.start();
    await waitFor(() => probe.last()?.phase === "Failed", { what: "the probe to fail" });
    same(probe.last(), "probe-start-error.json");

    const gated = harness(
      t,
      base({
        restartPolicy: "Always",
        initContainers: [{ name: "migrate-wait-db", image: "registry.example/app:latest", command: ["serve"] }],
        containers: [{ name: "app", image: "registry.example/app:latest", command: ["serve"] }],
      }),
    );
    gated.runner.start();
    await waitFor(() => gated.last()?.initContainerStatuses?.[0]?.state?.running, { what: "the waiter to run" });
    same(gated.last(), "gated-waiting.json");
    const pinned = `registry.example/app:latest@${gated.digest}`;
    gated.current()!.spec.containers[0]!.image = pinned;
    gated.runner.update(structuredClone(gated.current()!));
    await waitFor(() => gated.last()?.containerStatuses?.[0]?.image === pinned, { what: "the pinned image in status" });
    same(gated.last(), "gated-pinned.json");

    const released = harness(
      t,
      base({
        restartPolicy: "Always",
        initContainers: [{ name: "migrate-wait-db", image: "registry.example/app:latest", command: ["ok"] }],
        containers: [{ name: "app", image: "registry.example/app:latest", command: ["serve"] }],
      }),
    );
    released.current()!.spec.containers[0]!.image = `registry.example/app:latest@${released.digest}`;
    released.runner.update(structuredClone(released.current()!));
    released.runner.start();
    await waitFor(() => released.last()?.containerStatuses?.[0]?.state?.running, { what: "the app to run" });
    same(released.last(), "released-running.json");

    const missing = harness(
      t,
      base({
        restartPolicy: "Never",
        containers: [
          { name: "probe", image: "registry.example/app:never-pushed", imagePullPolicy: "Always", command: ["nope"] },
        ],
      }),
    );
    missing.runner.start();
    await waitFor(
      () => missing.statuses.some((s) => s.containerStatuses?.[0]?.state?.waiting?.reason === "ErrImagePull"),
      {
        what: "ErrImagePull",
      },
    );
    same(
      missing.statuses.find((s) => s.containerStatuses?.[0]?.state?.waiting?.reason === "ErrImagePull"),
      "pull-missing-image.json",
    );
    await waitFor(() => missing.last()?.containerStatuses?.[0]?.state?.waiting?.reason === "ImagePullBackOff", {
      what: "ImagePullBackOff",
    });
    same(missing.last(), "pull-missing-image-backoff.json");
  },
);
