// The argocd-cm keys that install the Migrator health check and resource actions, built from the Lua files
// of this directory. argocd-cm.yaml is this data, written out; argocd-cm.test.ts keeps the two equal.
//   resource.customizations.health.<group>_<kind>   the health.lua source
//   resource.customizations.actions.<group>_<kind>  YAML: discovery.lua and one definition per action
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { GROUP, KIND } from "@digest-migrations/shared";
import { stringify } from "yaml";
import { ARGOCD_DIR, DISCOVERY_LUA, HEALTH_LUA, actionLua } from "./lua.ts";

export const HEALTH_KEY = `resource.customizations.health.${GROUP}_${KIND}`;
export const ACTIONS_KEY = `resource.customizations.actions.${GROUP}_${KIND}`;

/** The action names: one directory with an action.lua under actions/ per action, sorted. */
export function actionNames(): string[] {
  return readdirSync(path.join(ARGOCD_DIR, "actions"), { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name !== "testdata")
    .map((d) => d.name)
    .sort();
}

/** The value of the actions key, as Argo CD's ResourceActions reads it. */
export interface ResourceActions {
  "discovery.lua": string;
  definitions: Array<{ name: string; "action.lua": string }>;
}

export function resourceActions(): ResourceActions {
  return {
    "discovery.lua": readFileSync(DISCOVERY_LUA, "utf8"),
    definitions: actionNames().map((name) => ({ name, "action.lua": readFileSync(actionLua(name), "utf8") })),
  };
}

/** The data to merge into argocd-cm. */
export function argocdCmData(): Record<string, string> {
  return {
    [HEALTH_KEY]: readFileSync(HEALTH_LUA, "utf8"),
    [ACTIONS_KEY]: stringify(resourceActions(), { lineWidth: 0, blockQuote: "literal" }),
  };
}

const HEADER = `# The Migrator health check and resource actions for Argo CD, as argocd-cm keys. Merge them into the
# argocd-cm ConfigMap of your Argo CD installation (see README.md beside this file), e.g.
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml
#   kubectl apply --server-side --field-manager=digest-migrations -f deploy/argocd/argocd-cm.yaml
# Generated from health.lua and actions/ by generate.ts; do not edit.
`;

/** argocd-cm.yaml: a ConfigMap named argocd-cm holding only these keys. */
export function argocdCmYaml(): string {
  const doc = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: "argocd-cm",
      namespace: "argocd",
      labels: { "app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd" },
    },
    data: argocdCmData(),
  };
  return HEADER + stringify(doc, { lineWidth: 0, blockQuote: "literal" });
}
