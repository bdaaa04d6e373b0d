// argocd-cm.yaml is the Lua of this directory, unchanged, under the keys Argo CD reads.
import { readFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { parse } from "yaml";
import { ARGOCD_DIR, DISCOVERY_LUA, HEALTH_LUA, actionLua } from "./lua.ts";
import { ACTIONS_KEY, HEALTH_KEY, actionNames, argocdCmData, argocdCmYaml } from "./snippet.ts";
import type { ResourceActions } from "./snippet.ts";

const snippet = parse(readFileSync(path.join(ARGOCD_DIR, "argocd-cm.yaml"), "utf8")) as {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  data: Record<string, string>;
};

t.test("a ConfigMap patch for argocd-cm", async (t) => {
  t.equal(snippet.apiVersion, "v1");
  t.equal(snippet.kind, "ConfigMap");
  t.equal(snippet.metadata.name, "argocd-cm");
  t.same(Object.keys(snippet.data).sort(), [ACTIONS_KEY, HEALTH_KEY].sort());
  t.equal(HEALTH_KEY, "resource.customizations.health.migrations.coderanger.net_Migrator");
  t.equal(ACTIONS_KEY, "resource.customizations.actions.migrations.coderanger.net_Migrator");
});

t.test("it holds the Lua files byte for byte (node deploy/argocd/generate.ts writes it)", async (t) => {
  t.equal(readFileSync(path.join(ARGOCD_DIR, "argocd-cm.yaml"), "utf8"), argocdCmYaml(), "argocd-cm.yaml is current");
  t.same(snippet.data, argocdCmData());
  t.equal(snippet.data[HEALTH_KEY], readFileSync(HEALTH_LUA, "utf8"));
  const actions = parse(snippet.data[ACTIONS_KEY]!) as ResourceActions;
  t.equal(actions["discovery.lua"], readFileSync(DISCOVERY_LUA, "utf8"));
  t.same(
    actions.definitions.map((d) => d.name),
    actionNames(),
  );
  for (const d of actions.definitions) t.equal(d["action.lua"], readFileSync(actionLua(d.name), "utf8"), d.name);
  t.notOk("mergeBuiltinActions" in actions, "Migrators have no built-in actions to merge");
});
