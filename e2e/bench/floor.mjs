// The render benchmark's floor: the least any manifest renderer on Node must do with a tree — read every
// *.yaml/*.yml file (kustomization files excepted), parse each YAML stream, and write the objects as
// the JSON stream the plugin writes. No validation, no wiring, no ordering.
//
//   node floor.mjs js-yaml|yaml <dir>
//
// Plain JavaScript on purpose: Node's TypeScript type stripping adds ~0.2 s and ~17 MB to a process's
// start, which would be charged to the floor but not to the (bundled) plugin.
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import path from "node:path";

const [parser, dir] = process.argv.slice(2);
if ((parser !== "js-yaml" && parser !== "yaml") || dir === undefined) {
  process.stderr.write("usage: floor.mjs js-yaml|yaml <dir>\n");
  process.exit(2);
}

/** js-yaml: loadAll. yaml: parseAllDocuments + toJS (the API that gives positions, as the plugin needs). */
const parse =
  parser === "js-yaml"
    ? (await import("js-yaml")).loadAll
    : await import("yaml").then(({ parseAllDocuments }) => (text) => {
        const values = [];
        for (const doc of parseAllDocuments(text)) {
          if (doc.errors.length > 0) throw doc.errors[0];
          values.push(doc.toJS());
        }
        return values;
      });

const KUSTOMIZATION = new Set(["kustomization.yaml", "kustomization.yml", "Kustomization"]);
const objects = [];
const walk = (d) => {
  for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = path.join(d, entry.name);
    if (entry.isDirectory()) walk(full);
    else if (/\.ya?ml$/.test(entry.name) && !KUSTOMIZATION.has(entry.name)) {
      for (const value of parse(readFileSync(full, "utf8")))
        if (value !== null && value !== undefined) objects.push(value);
    }
  }
};
walk(dir);
process.stdout.write(objects.map((o) => JSON.stringify(o, null, 2)).join("\n---\n") + "\n");
