// One pod on an emulated node, from binding to deletion, as the kubelet runs it: pull and run init
// containers one after another (each must exit 0 before the next starts), then start every app
// container; restart by `spec.restartPolicy` with backoff; report every step in the pod's status;
// on deletion stop the processes (SIGTERM, grace period, SIGKILL) and delete the pod for good.
//
// Each container starts with the image the pod's spec names at that moment (pod images are
// mutable: a controller may pin `app:latest` to `app:latest@sha256:…` while init containers run),
// so the spec is read fresh from the API before every start. Changing a running app container's
// image restarts that container, as a changed container spec hash does in the kubelet.
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { Container, ContainerStatus, Pod, PodStatus } from "@digest-migrations/shared";
import { ApiError, paths } from "../kit/client.ts";
import type { KubeClient } from "../kit/client.ts";
import type { NodeImages } from "./registry.ts";
import { ContainerConfigError, containerEnv } from "./env.ts";
import type { EnvSources } from "./env.ts";
import { imageDirectory, launch, resolveCommand } from "./process.ts";
import type { Exit, RunningProcess } from "./process.ts";
import { buildPodStatus, podPhase } from "./status.ts";
import type { Phase } from "./status.ts";
import { delay, errorText } from "../kit/wait.ts";

export interface Timing {
  /** First image pull retry delay (kubelet: 10 s), doubled up to pullBackoffMaxMs. */
  pullBackoffMs: number;
  pullBackoffMaxMs: number;
  /** First crash restart delay (kubelet: 10 s), doubled up to restartBackoffMaxMs. */
  restartBackoffMs: number;
  restartBackoffMaxMs: number;
}

export interface PullRecord {
  node: string;
  image: string;
  policy: string;
  ok: boolean;
  digest?: string;
  /** Bytes were downloaded (the digest was not on the node yet). */
  pulled: boolean;
  /** The registry was asked to resolve the reference (Always, or nothing cached). */
  contactedRegistry: boolean;
}

export interface StartRecord {
  node: string;
  namespace: string;
  pod: string;
  container: string;
  init: boolean;
  image: string;
  imageID: string;
  digest: string;
  /** The container's first command word (after image ENTRYPOINT defaulting). */
  command: string | undefined;
  argv: string[];
  /** False when the start failed (StartError). */
  ok: boolean;
  /** The process id (its process group id too) when the start succeeded. */
  pid?: number;
}

export interface NodeContext {
  name: string;
  hostIP: string;
  images: NodeImages;
}

export interface RunnerDeps {
  client: KubeClient;
  node: NodeContext;
  podIP: string;
  workDir: string;
  timing: Timing;
  env: EnvSources;
  recordPull(record: PullRecord): void;
  recordStart(record: StartRecord): void;
  log(msg: string): void;
  /** Called once the pod is deleted from the API (or the runner is killed). */
  finished(): void;
}

interface ContainerRun {
  name: string;
  init: boolean;
  status: ContainerStatus & { containerID?: string };
  proc?: RunningProcess;
  /** The spec image the running process was started from. */
  startedFrom?: string;
  /** Set when the spec changed under a running container: restart it regardless of policy. */
  specChanged?: boolean;
}

export class PodRunner {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  #pod: Pod;
  readonly #deps: RunnerDeps;
  readonly #containers: ContainerRun[];
  readonly #abort = new AbortController();
  readonly #startTime = new Date().toISOString();
  #terminating = false;
  #terminal: Phase | undefined;
  #dirty = false;
  #writing: Promise<void> | undefined;
  #gone = false;

  constructor(pod: Pod, deps: RunnerDeps) {
    this.#pod = pod;
    this.#deps = deps;
    this.namespace = pod.metadata.namespace ?? "default";
    this.name = pod.metadata.name ?? "";
    this.uid = pod.metadata.uid ?? "";
    const initial = (c: Container, init: boolean): ContainerRun => ({
      name: c.name,
      init,
      status: {
        name: c.name,
        image: c.image ?? "",
        imageID: "",
        ready: false,
        restartCount: 0,
        started: false,
        state: { waiting: { reason: "PodInitializing" } },
      },
    });
    this.#containers = [
      ...(pod.spec.initContainers ?? []).map((c) => initial(c, true)),
      ...pod.spec.containers.map((c) => initial(c, false)),
    ];
  }

  get pod(): Pod {
    return this.#pod;
  }

  /** The directory holding this pod's container logs. */
  get logDir(): string {
    return path.join(this.#deps.workDir, "pods", `${this.namespace}_${this.name}_${this.uid}`);
  }

  logFile(container: string, attempt: number): string {
    return path.join(this.logDir, container, `${attempt}.log`);
  }

  restartCount(container: string): number | undefined {
    return this.#containers.find((c) => c.name === container)?.status.restartCount;
  }

  start(): void {
    const phase = this.#pod.status?.phase;
    if (phase === "Succeeded" || phase === "Failed") {
      // Already finished (e.g. seen again after a relist): nothing to run.
      this.#terminal = phase;
      return;
    }
    this.#run().catch((err: unknown) => this.#deps.log(`pod ${this.namespace}/${this.name}: ${errorText(err)}`));
  }

  /** A newer version of the pod from the watch. */
  update(pod: Pod): void {
    const before = this.#reportedImages();
    this.#pod = pod;
    // The kubelet syncs a pod whose spec changed and rewrites the status of containers it has not
    // created from the new spec (their `image`): write the status when that changes what it reports.
    if (this.#reportedImages() !== before) this.#flush();
    if (pod.metadata.deletionTimestamp && !this.#terminating) {
      const grace =
        typeof pod.metadata.deletionGracePeriodSeconds === "number" ? pod.metadata.deletionGracePeriodSeconds : 30;
      this.#terminate(grace).catch((err: unknown) =>
        this.#deps.log(`pod ${this.namespace}/${this.name}: termination: ${errorText(err)}`),
      );
      return;
    }
    for (const run of this.#containers) {
      if (run.init || !run.proc || run.startedFrom === undefined) continue;
      const image = pod.spec.containers.find((c) => c.name === run.name)?.image;
      if (image !== undefined && image !== run.startedFrom && !run.specChanged) {
        this.#deps.log(`pod ${this.namespace}/${this.name}: container ${run.name} image changed, restarting`);
        run.specChanged = true;
        run.proc.kill("SIGTERM");
      }
    }
  }

  /** The pod vanished from the API (force deletion): stop everything now. */
  kill(): void {
    this.#gone = true;
    this.#stopAll("SIGKILL");
    this.#deps.finished();
  }

  /** Stops every process without touching the API (emulator shutdown). */
  async shutdown(): Promise<void> {
    this.#gone = true;
    this.#stopAll("SIGKILL");
    await Promise.all(this.#containers.flatMap((c) => (c.proc ? [c.proc.exited] : [])));
  }

  #stopAll(signal: NodeJS.Signals): void {
    this.#abort.abort();
    for (const c of this.#containers) c.proc?.kill(signal);
  }

  // ---- lifecycle -------------------------------------------------------------------------

  async #run(): Promise<void> {
    this.#flush();
    const policy = this.#pod.spec.restartPolicy ?? "Always";
    for (const run of this.#containers.filter((c) => c.init)) {
      for (let attempt = 0; ; attempt++) {
        const exit = await this.#runContainer(run);
        if (this.#stopped()) return;
        if (exit.exitCode === 0) break;
        if (policy === "Never") {
          this.#finish();
          return;
        }
        await this.#crashBackoff(run, attempt);
        if (this.#stopped()) return;
        this.#nextAttempt(run);
      }
    }
    await Promise.all(
      this.#containers
        .filter((c) => !c.init)
        .map(async (run) => {
          for (let attempt = 0; ; attempt++) {
            const exit = await this.#runContainer(run);
            if (this.#stopped()) return;
            if (run.specChanged) {
              run.specChanged = false;
              attempt = -1;
              this.#nextAttempt(run);
              continue;
            }
            const restart = policy === "Always" || (policy === "OnFailure" && exit.exitCode !== 0);
            if (!restart) return;
            await this.#crashBackoff(run, attempt);
            if (this.#stopped()) return;
            this.#nextAttempt(run);
          }
        }),
    );
    if (!this.#stopped()) this.#finish();
  }

  #stopped(): boolean {
    return this.#abort.signal.aborted || this.#terminating || this.#gone;
  }

  #finish(): void {
    this.#terminal = this.#phase();
    this.#flush();
  }

  async #crashBackoff(run: ContainerRun, attempt: number): Promise<void> {
    const { restartBackoffMs, restartBackoffMaxMs } = this.#deps.timing;
    const wait = Math.min(restartBackoffMs * 2 ** attempt, restartBackoffMaxMs);
    run.status = {
      ...run.status,
      lastState: run.status.state ?? {},
      state: {
        waiting: {
          reason: "CrashLoopBackOff",
          message: `back-off ${Math.round(wait / 1000)}s restarting failed container=${run.name} pod=${this.name}_${this.namespace}(${this.uid})`,
        },
      },
    };
    this.#flush();
    await delay(wait, this.#abort.signal);
  }

  /** Pulls, configures and runs one container attempt; resolves with its exit. */
  async #runContainer(run: ContainerRun): Promise<Exit> {
    const { node, timing } = this.#deps;
    let backoff = timing.pullBackoffMs;
    const setWaiting = (reason: string, message?: string): void => {
      run.status = {
        ...run.status,
        ready: false,
        started: false,
        state: { waiting: { reason, ...(message ? { message } : {}) } },
      };
      this.#flush();
    };
    for (;;) {
      if (this.#stopped()) return { exitCode: 137, signal: "SIGKILL" };
      const pod = await this.#freshPod();
      if (this.#stopped()) return { exitCode: 137, signal: "SIGKILL" };
      const spec = [...(pod.spec.initContainers ?? []), ...pod.spec.containers].find((c) => c.name === run.name);
      if (!spec) throw new Error(`pod ${this.namespace}/${this.name}: container ${run.name} vanished from the spec`);
      const image = spec.image ?? "";
      run.status = { ...run.status, image };
      setWaiting("ContainerCreating");
      const policy = spec.imagePullPolicy ?? "";
      const pulled = node.images.pull(image, policy);
      this.#deps.recordPull({
        node: node.name,
        image,
        policy,
        ok: pulled.ok,
        pulled: pulled.ok && pulled.pulled,
        contactedRegistry: pulled.ok ? pulled.contactedRegistry : true,
        ...(pulled.ok ? { digest: pulled.image.digest } : {}),
      });
      if (!pulled.ok) {
        setWaiting(pulled.reason, pulled.message);
        await delay(backoff, this.#abort.signal);
        if (pulled.reason !== "InvalidImageName") setWaiting("ImagePullBackOff", `Back-off pulling image "${image}"`);
        await delay(backoff, this.#abort.signal);
        backoff = Math.min(backoff * 2, timing.pullBackoffMaxMs);
        continue;
      }
      let env: Record<string, string>;
      try {
        env = await containerEnv(pod, spec, this.#deps.env);
      } catch (err) {
        if (!(err instanceof ContainerConfigError)) throw err;
        setWaiting("CreateContainerConfigError", err.message);
        await delay(backoff, this.#abort.signal);
        backoff = Math.min(backoff * 2, timing.pullBackoffMaxMs);
        continue;
      }
      const stored = pulled.image;
      const imageID = `${stored.repository}@${stored.digest}`;
      // containerd reports the image by the tag it carries on this node, else by the spec's name.
      const tagged = node.images.tagOf(stored.repository, stored.digest);
      run.status = { ...run.status, image: tagged ?? image, imageID };
      const imageDir = imageDirectory(stored, path.join(this.#deps.workDir, "images"));
      const processEnv: Record<string, string> = {
        PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
        HOSTNAME: this.name,
        HOME: imageDir,
        IMAGE_DIR: imageDir,
        ...stored.content.env,
        ...env,
      };
      const resolved = resolveCommand(stored, spec, processEnv, {
        imageDir,
        podName: this.name,
        podNamespace: this.namespace,
        containerName: run.name,
      });
      const attempt = run.status.restartCount ?? 0;
      const record: StartRecord = {
        node: node.name,
        namespace: this.namespace,
        pod: this.name,
        container: run.name,
        init: run.init,
        image,
        imageID,
        digest: stored.digest,
        command: spec.command?.[0] ?? stored.content.entrypoint?.[0],
        argv: resolved.ok ? resolved.argv : [],
        ok: false,
      };
      const startedAt = new Date().toISOString();
      let proc: RunningProcess | undefined;
      let startError = resolved.ok ? undefined : resolved.message;
      if (resolved.ok) {
        try {
          proc = await launch(resolved.argv, resolved.env, imageDir, this.logFile(run.name, attempt));
        } catch (err) {
          startError = `exec: ${JSON.stringify(resolved.argv[0])}: ${errorText(err)}`;
        }
      }
      if (!proc) {
        this.#deps.recordStart(record);
        run.status = {
          ...run.status,
          ready: false,
          started: false,
          state: {
            terminated: {
              exitCode: 128,
              reason: "StartError",
              message: startError ?? "start failed",
              startedAt: "1970-01-01T00:00:00Z",
              finishedAt: new Date().toISOString(),
            },
          },
        };
        this.#flush();
        return { exitCode: 128, signal: null };
      }
      this.#deps.recordStart({ ...record, ok: true, pid: proc.pid });
      const containerID = `containerd://${randomBytes(32).toString("hex")}`;
      run.proc = proc;
      run.startedFrom = image;
      run.status = {
        ...run.status,
        containerID,
        ready: !run.init,
        started: true,
        state: { running: { startedAt } },
      };
      this.#flush();
      const exit = await proc.exited;
      run.proc = undefined;
      run.startedFrom = undefined;
      run.status = {
        ...run.status,
        ready: false,
        started: false,
        state: {
          terminated: {
            exitCode: exit.exitCode,
            reason: exit.exitCode === 0 ? "Completed" : "Error",
            startedAt,
            finishedAt: new Date().toISOString(),
            containerID,
          },
        },
      };
      this.#flush();
      return exit;
    }
  }

  /** The pod as the API has it now (falls back to the watched copy while the API is unreachable). */
  async #freshPod(): Promise<Pod> {
    try {
      const pod = await this.#deps.client.get<Pod>(paths.pod(this.namespace, this.name));
      if (pod.metadata.uid === this.uid) this.#pod = pod;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.kill();
    }
    return this.#pod;
  }

  /** Bumps restartCount as a new attempt begins after a crash backoff. */
  #nextAttempt(run: ContainerRun): void {
    run.status = { ...run.status, restartCount: (run.status.restartCount ?? 0) + 1 };
  }

  // ---- termination -------------------------------------------------------------------------

  async #terminate(graceSeconds: number): Promise<void> {
    this.#terminating = true;
    this.#abort.abort();
    const running = this.#containers.flatMap((c) => (c.proc ? [c.proc] : []));
    for (const proc of running) proc.kill("SIGTERM");
    const all = Promise.all(running.map((proc) => proc.exited));
    const graceMs = Math.max(0, graceSeconds) * 1000;
    const timedOut = await Promise.race([all.then(() => false), delay(graceMs).then(() => true)]);
    if (timedOut) for (const proc of running) proc.kill("SIGKILL");
    await all;
    // Final status, then remove the pod: the kubelet deletes with grace 0 once containers are gone.
    await this.#settled();
    for (let backoff = 200; !this.#gone; backoff = Math.min(backoff * 2, 2_000)) {
      try {
        await this.#deps.client.delete(paths.pod(this.namespace, this.name), {
          apiVersion: "v1",
          kind: "DeleteOptions",
          gracePeriodSeconds: 0,
          preconditions: { uid: this.uid },
        });
        break;
      } catch (err) {
        if (err instanceof ApiError && (err.status === 404 || err.status === 409)) break;
        this.#deps.log(`pod ${this.namespace}/${this.name}: delete: ${errorText(err)}`);
        await delay(backoff);
      }
    }
  }

  // ---- status ------------------------------------------------------------------------------

  #phase(): Phase {
    if (this.#terminal) return this.#terminal;
    return podPhase(
      this.#pod.spec.restartPolicy,
      this.#containers.filter((c) => c.init).map((c) => c.status),
      this.#containers.filter((c) => !c.init).map((c) => c.status),
    );
  }

  /**
   * A container's status as the kubelet reports it: one it has not created yet (no imageID) shows the
   * `image` of the pod's spec as of this write (kubelet convertToAPIContainerStatuses copies it from
   * the spec on every sync), so a pin patched into a pending pod's spec appears in its status.
   */
  #reported(run: ContainerRun): ContainerStatus {
    if (run.status.imageID !== "") return run.status;
    const spec = [...(this.#pod.spec.initContainers ?? []), ...this.#pod.spec.containers].find(
      (c) => c.name === run.name,
    );
    return spec?.image === undefined ? run.status : { ...run.status, image: spec.image };
  }

  #reportedImages(): string {
    return JSON.stringify(this.#containers.map((c) => this.#reported(c).image));
  }

  status(): PodStatus {
    const now = new Date().toISOString();
    return buildPodStatus({
      phase: this.#phase(),
      init: this.#containers.filter((c) => c.init).map((c) => this.#reported(c)),
      app: this.#containers.filter((c) => !c.init).map((c) => this.#reported(c)),
      previous: this.#pod.status,
      now,
      startTime: this.#startTime,
      hostIP: this.#deps.node.hostIP,
      podIP: this.#deps.podIP,
    });
  }

  /** Schedules a status write; writes coalesce and retry until the API takes them. */
  #flush(): void {
    this.#dirty = true;
    this.#writing ??= this.#writeLoop().finally(() => {
      this.#writing = undefined;
      // A change that arrived after the loop's last check but before this callback.
      if (this.#dirty && !this.#gone) this.#flush();
    });
  }

  async #settled(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  async #writeLoop(): Promise<void> {
    let backoff = 100;
    while (this.#dirty && !this.#gone) {
      this.#dirty = false;
      const status = this.status();
      try {
        const updated = await this.#deps.client.mergePatch<Pod>(paths.podStatus(this.namespace, this.name), { status });
        if (updated.metadata.uid === this.uid) this.#pod = { ...this.#pod, status: updated.status ?? status };
        backoff = 100;
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) return;
        this.#deps.log(`pod ${this.namespace}/${this.name}: status write: ${errorText(err)}`);
        this.#dirty = true;
        await delay(backoff);
        backoff = Math.min(backoff * 2, 2_000);
      }
    }
  }
}
