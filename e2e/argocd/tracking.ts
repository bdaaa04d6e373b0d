// Resource tracking as the repo-server applies it to every generated object before the controller sees
// it: reposerver/repository/repository.go GenerateManifests → util/argo/resource_tracking.go SetAppInstance
// and util/kube SetAppInstanceLabel / SetAppInstanceAnnotation, read in v2.6.15 and v3.5.1.
//   label                  metadata.labels[<appLabelKey>] = <app name> (the pod template is left alone
//                          unless the key is the legacy applications.argoproj.io/app-name)
//   annotation             metadata.annotations["argocd.argoproj.io/tracking-id"] =
//                          "<app>:<group>/<kind>:<namespace, else the app's>/<name>"
//   annotation+label       both, the label value cut to 63 characters
// Without a method set, v2.x uses label and v3.x annotation. CustomResourceDefinitions are not tracked.
import type { KubeObject } from "./manifest-stream.ts";

/** What tracking touches of an object. */
export type Trackable = Pick<KubeObject, "apiVersion" | "kind" | "metadata">;

export type TrackingMethod = "label" | "annotation" | "annotation+label";

export const TRACKING_ID = "argocd.argoproj.io/tracking-id";
export const DEFAULT_APP_LABEL_KEY = "app.kubernetes.io/instance";
const LEGACY_APP_LABEL_KEY = "applications.argoproj.io/app-name";

function group(apiVersion: string | undefined): string {
  const v = apiVersion ?? "";
  return v.includes("/") ? v.slice(0, v.indexOf("/")) : "";
}

function isCrd(o: Trackable): boolean {
  return o.kind === "CustomResourceDefinition" && group(o.apiVersion) === "apiextensions.k8s.io";
}

/** SetAppInstance on a copy of `o`. */
export function track<T extends Trackable>(
  o: T,
  method: TrackingMethod,
  appName: string,
  namespace: string,
  appLabelKey = DEFAULT_APP_LABEL_KEY,
): T {
  if (appName === "" || appLabelKey === "" || isCrd(o)) return o;
  const copy = structuredClone(o);
  copy.metadata ??= {};
  const setLabel = (value: string): void => {
    copy.metadata!.labels = { ...(copy.metadata!.labels ?? {}), [appLabelKey]: value };
    if (appLabelKey !== LEGACY_APP_LABEL_KEY) return;
    if (!["apps", "extensions"].includes(group(copy.apiVersion))) return;
    if (!["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"].includes(copy.kind)) return;
    const template = ((copy as Record<string, unknown>)["spec"] ??= {}) as {
      template?: { metadata?: { labels?: Record<string, string> } };
    };
    template.template ??= {};
    template.template.metadata ??= {};
    template.template.metadata.labels = { ...(template.template.metadata.labels ?? {}), [appLabelKey]: value };
  };
  const setAnnotation = (): void => {
    const ns = copy.metadata!.namespace || namespace;
    const id = `${appName}:${group(copy.apiVersion)}/${copy.kind}:${ns}/${copy.metadata!.name ?? ""}`;
    copy.metadata!.annotations = { ...(copy.metadata!.annotations ?? {}), [TRACKING_ID]: id };
  };
  switch (method) {
    case "label":
      setLabel(appName);
      break;
    case "annotation":
      setAnnotation();
      break;
    case "annotation+label":
      setAnnotation();
      setLabel(appName.slice(0, 63));
      break;
  }
  return copy;
}
