// Writes argocd-cm.yaml from the Lua files of this directory:  node deploy/argocd/generate.ts
// (argocd-cm.test.ts fails until it is run after a Lua file changed).
import { writeFileSync } from "node:fs";
import path from "node:path";
import { ARGOCD_DIR } from "./lua.ts";
import { argocdCmYaml } from "./snippet.ts";

writeFileSync(path.join(ARGOCD_DIR, "argocd-cm.yaml"), argocdCmYaml());
