// A container's environment, resolved the way the kubelet does: `envFrom` sources first, then
// `env` in order (later entries win); `value` with $(VAR) expansion against the variables defined
// before it; `valueFrom.fieldRef` (downward API), `secretKeyRef` and `configMapKeyRef` read from
// the API. A missing Secret/ConfigMap or key (not `optional`) is the kubelet's
// CreateContainerConfigError: the container waits and the kubelet retries.
import type { Container, Pod } from "@digest-migrations/shared";

export class ContainerConfigError extends Error {
  override name = "ContainerConfigError";
}

/** Reads Secret/ConfigMap data; undefined when the object does not exist. */
export interface EnvSources {
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  configMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
}

/**
 * Expands $(VAR) references (Kubernetes syntax): `$$` escapes a `$`, unknown variables are left
 * as written.
 */
export function expand(input: string, env: Record<string, string>): string {
  let out = "";
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (c === "$" && input[i + 1] === "$") {
      out += "$";
      i++;
    } else if (c === "$" && input[i + 1] === "(") {
      const end = input.indexOf(")", i + 2);
      if (end < 0) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, end);
      out += Object.hasOwn(env, name) ? env[name] : input.slice(i, end + 1);
      i = end;
    } else {
      out += c;
    }
  }
  return out;
}

/** The downward API value of `fieldPath` for `pod` (the paths the kubelet supports for env). */
export function fieldRefValue(pod: Pod, fieldPath: string): string {
  const meta = pod.metadata;
  const mapKey = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (mapKey) {
    const map = mapKey[1] === "labels" ? meta.labels : meta.annotations;
    return map?.[mapKey[2] ?? ""] ?? "";
  }
  const status = pod.status ?? {};
  switch (fieldPath) {
    case "metadata.name":
      return meta.name ?? "";
    case "metadata.namespace":
      return meta.namespace ?? "";
    case "metadata.uid":
      return meta.uid ?? "";
    case "metadata.labels":
      return formatMap(meta.labels);
    case "metadata.annotations":
      return formatMap(meta.annotations);
    case "spec.nodeName":
      return pod.spec.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec.serviceAccountName ?? "";
    case "status.podIP":
      return typeof status.podIP === "string" ? status.podIP : "";
    case "status.hostIP":
      return typeof status.hostIP === "string" ? status.hostIP : "";
    default:
      throw new ContainerConfigError(`unsupported fieldRef.fieldPath "${fieldPath}"`);
  }
}

function formatMap(map: Record<string, string> | undefined): string {
  return Object.entries(map ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join("\n");
}

interface KeyRef {
  name?: string;
  key?: string;
  optional?: boolean;
}

/** The variables of `container` in `pod`, in kubelet order. */
export async function containerEnv(
  pod: Pod,
  container: Container,
  sources: EnvSources,
): Promise<Record<string, string>> {
  const namespace = pod.metadata.namespace ?? "default";
  const env: Record<string, string> = {};
  const where = `pod ${namespace}/${pod.metadata.name} container ${container.name}`;

  const envFrom = (container.envFrom ?? []) as {
    prefix?: string;
    secretRef?: KeyRef;
    configMapRef?: KeyRef;
  }[];
  for (const from of envFrom) {
    const ref = from.secretRef ?? from.configMapRef;
    if (!ref?.name) throw new ContainerConfigError(`${where}: envFrom entry names no Secret or ConfigMap`);
    const kind = from.secretRef ? "secret" : "configmap";
    const data = from.secretRef
      ? await sources.secret(namespace, ref.name)
      : await sources.configMap(namespace, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new ContainerConfigError(`${kind} "${ref.name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) env[(from.prefix ?? "") + k] = v;
  }

  for (const variable of container.env ?? []) {
    const from = variable.valueFrom as
      | {
          fieldRef?: { fieldPath?: string };
          secretKeyRef?: KeyRef;
          configMapKeyRef?: KeyRef;
          resourceFieldRef?: unknown;
        }
      | undefined;
    if (!from) {
      env[variable.name] = expand(variable.value ?? "", env);
    } else if (from.fieldRef) {
      env[variable.name] = fieldRefValue(pod, from.fieldRef.fieldPath ?? "");
    } else if (from.secretKeyRef || from.configMapKeyRef) {
      const ref = (from.secretKeyRef ?? from.configMapKeyRef) as KeyRef;
      const kind = from.secretKeyRef ? "secret" : "configmap";
      const data = from.secretKeyRef
        ? await sources.secret(namespace, ref.name ?? "")
        : await sources.configMap(namespace, ref.name ?? "");
      const value = data?.[ref.key ?? ""];
      if (value === undefined) {
        if (ref.optional) continue;
        throw new ContainerConfigError(
          data ? `couldn't find key ${ref.key} in ${kind} ${namespace}/${ref.name}` : `${kind} "${ref.name}" not found`,
        );
      }
      env[variable.name] = value;
    } else {
      throw new ContainerConfigError(`${where}: env ${variable.name}: unsupported valueFrom ${JSON.stringify(from)}`);
    }
  }
  return env;
}
