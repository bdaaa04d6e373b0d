// The waiter protocol: everything the plugin (which injects the waiter), the waiter (which asks), the
// waiter API (which answers) and the controller (which decides) must agree on, in one place — the init
// container's name and shape, the API's port, path and query, the answer, the validation of the query's
// parameters and the release rule itself. Kept free of heavy imports: the waiter's bundle includes it.
import { digestFromImageID } from "./image-id.ts";
import { pinnedDigest } from "./image-ref.ts";
import { JobBuildError, gatedContainer } from "./job.ts";
import type { Container, ContainerStatus, Pod } from "./k8s.ts";
import { CONDITION_READY, REASONS, WAITER_CONTAINER_PREFIX, migratedDigests } from "./migrator.ts";
import type { Migrator, MigratorStatus } from "./migrator.ts";
import { withWaiterToken } from "./waiter-auth.ts";

// ---------------------------------------------------------------------------------------------
// The init container

/** Default port of the reconciler's waiter API. */
export const WAITER_API_PORT = 8443;
/** Path of the waiter API's long-poll endpoint. */
export const WAITER_API_PATH = "/v1/wait";
/** The waiter's executable inside the reconciler image. */
export const WAITER_COMMAND = "digest-migrations-waiter";

export interface WaiterSettings {
  /** Image holding the waiter (the reconciler image). */
  image: string;
  /** Base URL of the reconciler's waiter API, e.g. http://digest-migrations.digest-migrations-system.svc:8443 */
  apiUrl: string;
  /**
   * Send the pod's projected service-account token (waiter authentication): the waiter mounts the pod
   * volume waiterTokenVolume() and passes --token-file (see waiter-auth.ts).
   */
  token?: boolean;
}

/** Kubernetes container names are DNS labels: at most 63 characters. */
const DNS_LABEL_MAX = 63;

/** The waiter container's name for a Migrator (upstream's `migrate-wait-` prefix). */
export function waiterContainerName(migratorName: string): string {
  return `${WAITER_CONTAINER_PREFIX}${migratorName}`.slice(0, DNS_LABEL_MAX).replace(/-+$/, "");
}

export function isWaiterContainer(container: Pick<Container, "name">): boolean {
  return container.name.startsWith(WAITER_CONTAINER_PREFIX);
}

/**
 * What the `restricted` Pod Security Standard asks of a container: non-root, no privilege escalation,
 * every capability dropped, the runtime's default seccomp profile; plus a read-only root filesystem.
 * The waiter and the probe pod's container both run with it.
 */
export function restrictedSecurityContext(): Record<string, unknown> {
  return {
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/**
 * The init container that holds a pod until its digest is migrated. Pod identity comes from the
 * downward API; the container asks for the Migrator and the gated application container by name.
 */
export function waiterInitContainer(migratorName: string, appContainer: string, settings: WaiterSettings): Container {
  const container: Container = {
    name: waiterContainerName(migratorName),
    image: settings.image,
    imagePullPolicy: "IfNotPresent",
    command: [WAITER_COMMAND],
    args: ["--api", settings.apiUrl, "--migrator", migratorName, "--container", appContainer],
    env: [
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { name: "POD_UID", valueFrom: { fieldRef: { fieldPath: "metadata.uid" } } },
    ],
    resources: {
      requests: { cpu: "10m", memory: "32Mi" },
      limits: { cpu: "100m", memory: "64Mi" },
    },
    securityContext: restrictedSecurityContext(),
  };
  return settings.token ? withWaiterToken(container) : container;
}

// ---------------------------------------------------------------------------------------------
// The question and the answer

/** What a waiter asks: "may this container of this pod start?" */
export interface WaitQuery {
  namespace: string;
  pod: string;
  /** metadata.uid of the pod, when the waiter knows it (downward API); guards against a recreated pod of the same name. */
  podUID?: string;
  /** Name of the Migrator (in `namespace`) gating the pod. */
  migrator: string;
  /** Name of the gated application container. */
  container: string;
}

/** The answer: `ready` releases the waiter; `reason`/`message` say why not (or why yes). */
export interface WaitAnswer {
  ready: boolean;
  /** CamelCase machine-readable reason: one of ANSWER_REASONS or a Migrator condition reason. */
  reason: string;
  /** Human-readable explanation; never contains secrets. */
  message: string;
  /** The repository digest the pod runs, once known. */
  digest?: string;
}

/** Reasons of answers that are not a Migrator condition reason. */
export const ANSWER_REASONS = {
  /** Released: the pod is pinned to a migrated digest and its kubelet has seen the pin. */
  Migrated: "Migrated",
  /** The digest is migrated, but the kubelet has not yet reported the pinned image for the container. */
  WaitingForKubelet: "WaitingForKubelet",
  UnknownMigrator: "UnknownMigrator",
  UnknownPod: "UnknownPod",
  UnknownContainer: "UnknownContainer",
} as const;

/** The query string parameters of `GET /v1/wait`. */
const QUERY_PARAMS = ["namespace", "pod", "podUID", "migrator", "container"] as const satisfies (keyof WaitQuery)[];
const TIMEOUT_PARAM = "timeoutSeconds";

/** The long-poll request: the waiter API's path and the pod's parameters (podUID last, only when known). */
export function waitUrl(api: URL, query: WaitQuery, timeoutSeconds: number): URL {
  const url = new URL(api.href.replace(/\/+$/, "") + WAITER_API_PATH);
  const params = new URLSearchParams();
  for (const name of QUERY_PARAMS) if (name !== "podUID") params.set(name, query[name] ?? "");
  params.set(TIMEOUT_PARAM, String(timeoutSeconds));
  if (query.podUID) params.set("podUID", query.podUID);
  url.search = params.toString();
  return url;
}

/** Only the four public fields leave the server, whatever else an answer object carries. */
export function answerBody(answer: WaitAnswer): WaitAnswer {
  const body: WaitAnswer = { ready: answer.ready, reason: answer.reason, message: answer.message };
  if (answer.digest !== undefined) body.digest = answer.digest;
  return body;
}

/** A 200 answer's body, or undefined when it is not {ready, reason, message[, digest]}. */
export function parseAnswer(text: string): WaitAnswer | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== "object" || body === null) return undefined;
  const b = body as Record<string, unknown>;
  if (typeof b["ready"] !== "boolean" || typeof b["reason"] !== "string" || typeof b["message"] !== "string")
    return undefined;
  const answer: WaitAnswer = { ready: b["ready"], reason: b["reason"], message: b["message"] };
  if (typeof b["digest"] === "string") answer.digest = b["digest"];
  return answer;
}

// ---------------------------------------------------------------------------------------------
// Validating the question (the server rejects a bad request with 400, the waiter a bad flag with exit 2)

/** RFC 1123 label: what Kubernetes requires of namespace and container names. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1123 subdomain: what Kubernetes requires of pod and custom resource names. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_SUBDOMAIN_MAX = 253;
/** metadata.uid is a UUID generated by the apiserver. */
const UID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Why `value` is not a DNS name of at most `max` characters matching `pattern` (described as `what`). */
function dnsNameError(value: string, max: number, pattern: RegExp, what: string): string | undefined {
  if (value.length === 0) return "must not be empty";
  if (value.length > max) return `must be at most ${max} characters (got ${value.length})`;
  return pattern.test(value) ? undefined : `must be a ${what}`;
}

/** Returns undefined when `value` is a valid DNS-1123 label, else the reason. */
export function dnsLabelError(value: string): string | undefined {
  return dnsNameError(
    value,
    DNS_LABEL_MAX,
    DNS_LABEL,
    "DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit",
  );
}

/** Returns undefined when `value` is a valid DNS-1123 subdomain, else the reason. */
export function dnsSubdomainError(value: string): string | undefined {
  return dnsNameError(
    value,
    DNS_SUBDOMAIN_MAX,
    DNS_SUBDOMAIN,
    "DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit",
  );
}

export function uidError(value: string): string | undefined {
  return UID.test(value) ? undefined : "must be a UUID (metadata.uid of the pod)";
}

/** The check of each WaitQuery field. `podUID` is optional. */
const FIELD_CHECKS: Record<keyof WaitQuery, (value: string) => string | undefined> = {
  namespace: dnsLabelError,
  pod: dnsSubdomainError,
  podUID: uidError,
  migrator: dnsSubdomainError,
  container: dnsLabelError,
};

/** Every problem with a WaitQuery, as "field: reason" strings; empty when valid. */
export function waitQueryErrors(query: Partial<Record<keyof WaitQuery, string | undefined>>): string[] {
  const errors: string[] = [];
  for (const field of QUERY_PARAMS) {
    const value = query[field];
    if (value === undefined) {
      if (field !== "podUID") errors.push(`${field}: is required`);
      continue;
    }
    const reason = FIELD_CHECKS[field](value);
    if (reason) errors.push(`${field}: ${reason}`);
  }
  return errors;
}

export type ParsedWaitRequest = { ok: true; query: WaitQuery; timeoutSeconds: number } | { ok: false; message: string };

const ALLOWED_PARAMS: ReadonlySet<string> = new Set([...QUERY_PARAMS, TIMEOUT_PARAM]);

/**
 * Parses the query string of `GET /v1/wait`. Rejects unknown and repeated parameters (so a typo is
 * an error rather than a silently ignored filter). `timeoutSeconds` defaults to
 * `defaultTimeoutSeconds` and is capped at `maxTimeoutSeconds`.
 */
export function parseWaitParams(
  params: URLSearchParams,
  limits: { defaultTimeoutSeconds: number; maxTimeoutSeconds: number },
): ParsedWaitRequest {
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const key of params.keys()) {
    if (!ALLOWED_PARAMS.has(key)) errors.push(`unknown parameter "${key.slice(0, 64)}"`);
    else if (seen.has(key)) errors.push(`parameter "${key}" given more than once`);
    seen.add(key);
  }
  const get = (name: string): string | undefined => params.get(name) ?? undefined;
  const raw = {
    namespace: get("namespace"),
    pod: get("pod"),
    podUID: get("podUID") || undefined,
    migrator: get("migrator"),
    container: get("container"),
  };
  errors.push(...waitQueryErrors(raw));

  let timeoutSeconds = limits.defaultTimeoutSeconds;
  const timeout = get(TIMEOUT_PARAM);
  if (timeout !== undefined) {
    if (!/^[0-9]{1,6}$/.test(timeout)) errors.push(`${TIMEOUT_PARAM}: must be a non-negative integer`);
    else timeoutSeconds = Math.min(Number(timeout), limits.maxTimeoutSeconds);
  }
  if (errors.length > 0) return { ok: false, message: errors.join("; ") };
  const query: WaitQuery = {
    namespace: raw.namespace!,
    pod: raw.pod!,
    migrator: raw.migrator!,
    container: raw.container!,
  };
  if (raw.podUID !== undefined) query.podUID = raw.podUID;
  return { ok: true, query, timeoutSeconds };
}

// ---------------------------------------------------------------------------------------------
// The release rule

/**
 * Has the kubelet seen the pin of container `status.name` to `digest`? Either its own status for the
 * container names the pinned reference (`status.containerStatuses[].image` ends with `@<digest>`: the
 * kubelet copies `image` from the pod spec into the status of a container it has not created yet,
 * rewriting it on its first sync after the spec changed), or the container already ran that digest
 * (`imageID` `<repo>@<digest>`; `image` is unreliable once a container exists, `imageID` is not).
 *
 * Why it matters: on kubelet 1.20, when a pending pod's container image is patched and its init
 * container exits within about a second, the kubelet may start the image of the spec it held before
 * the patch, notice "definition changed, will be restarted", kill it (exit 137) and start the pinned
 * one. Releasing only once the kubelet's status shows the pinned reference means the kubelet's copy of
 * the spec is the pinned one when the waiter exits.
 */
export function kubeletSeesPin(status: ContainerStatus | undefined, digest: string): boolean {
  if (status === undefined) return false;
  if (typeof status.image === "string" && status.image.endsWith(`@${digest}`)) return true;
  const ran = digestFromImageID(status.imageID ?? "");
  return ran.ok && ran.digest === digest;
}

export interface ReleaseInput {
  /** spec.containers[C].image of the gated container C. */
  image: string | undefined;
  /** status.containerStatuses[C] as the kubelet last wrote it, if it has. */
  kubelet: ContainerStatus | undefined;
  status: MigratorStatus | undefined;
  /** The Migrator's Ready condition (reason/message), to explain a wait. */
  condition?: { reason: string; message: string };
}

/**
 * A gated pod may start when (1) its gated container's spec is pinned to a digest D, so it runs exactly
 * those bytes, (2) D is recorded as migrated for the Migrator — a digest migrated before (a rollback)
 * releases at once, with no Job — and (3) the kubelet has seen the pin (kubeletSeesPin).
 */
export function mayRelease(input: ReleaseInput): WaitAnswer {
  const condition = input.condition;
  const digest = pinnedDigest(input.image);
  if (digest === undefined) {
    const reason = condition?.reason && condition.reason !== REASONS.Succeeded ? condition.reason : REASONS.Probing;
    return {
      ready: false,
      reason,
      message: `the image digest of this pod is not resolved and pinned yet${condition?.message ? `: ${condition.message}` : ""}`,
    };
  }
  if (migratedDigests(input.status).has(digest)) {
    if (!kubeletSeesPin(input.kubelet, digest)) {
      const seen = input.kubelet === undefined ? "no status yet" : `image ${JSON.stringify(input.kubelet.image)}`;
      return {
        ready: false,
        reason: ANSWER_REASONS.WaitingForKubelet,
        message: `${digest} is migrated; waiting for the kubelet to report the pinned image ${input.image} for this container (it reports ${seen})`,
        digest,
      };
    }
    return { ready: true, reason: ANSWER_REASONS.Migrated, message: `${digest} is migrated`, digest };
  }
  if (input.status?.currentDigest === digest && condition !== undefined) {
    return { ready: false, reason: condition.reason, message: condition.message, digest };
  }
  return {
    ready: false,
    reason: REASONS.Running,
    message: `${digest} is not migrated yet${condition?.message ? `: ${condition.message}` : ""}`,
    digest,
  };
}

/**
 * The answer to `query` from what the caches hold: the Migrator and the pod it names (undefined when
 * absent). A pod replaced under the same name, a container the Migrator does not gate, or an unknown
 * Migrator is never released.
 */
export function answerWait(query: WaitQuery, migrator: Migrator | undefined, pod: Pod | undefined): WaitAnswer {
  const where = `${query.namespace}/${query.pod}`;
  if (migrator === undefined) {
    const message = `Migrator ${query.namespace}/${query.migrator} not found`;
    return { ready: false, reason: ANSWER_REASONS.UnknownMigrator, message };
  }
  if (pod === undefined) return { ready: false, reason: ANSWER_REASONS.UnknownPod, message: `pod ${where} not found` };
  if (query.podUID !== undefined && query.podUID !== "" && pod.metadata.uid !== query.podUID) {
    const message = `pod ${where} has uid ${pod.metadata.uid}, not ${query.podUID} (it was replaced)`;
    return { ready: false, reason: ANSWER_REASONS.UnknownPod, message };
  }
  const container = pod.spec.containers.find((c) => c.name === query.container);
  if (container === undefined) {
    const message = `pod ${where} has no container ${query.container}`;
    return { ready: false, reason: ANSWER_REASONS.UnknownContainer, message };
  }
  let gated: string;
  try {
    gated = gatedContainer(migrator.spec ?? { selector: {} }, pod.spec).name;
  } catch (error) {
    if (!(error instanceof JobBuildError)) throw error;
    return { ready: false, reason: REASONS.InvalidSpec, message: error.message };
  }
  if (gated !== query.container) {
    const message = `Migrator ${query.namespace}/${query.migrator} gates container ${gated}, not ${query.container}`;
    return { ready: false, reason: ANSWER_REASONS.UnknownContainer, message };
  }
  const input: ReleaseInput = {
    image: container.image,
    kubelet: (pod.status?.containerStatuses ?? []).find((s) => s.name === query.container),
    status: migrator.status,
  };
  const condition = migrator.status?.conditions?.find((c) => c.type === CONDITION_READY);
  if (condition !== undefined) input.condition = { reason: condition.reason, message: condition.message };
  return mayRelease(input);
}
