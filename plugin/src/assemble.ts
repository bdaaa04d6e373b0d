// The second half of generate (generate.ts starts the renderer, then imports this module): a rendered
// source's manifests (a directory's files read, or the renderer's output parsed), checked for duplicates,
// wired to their Migrators, ordered and serialised as one stream.
import type { GenerateResult, Rendered } from "./generate.ts";
import { checkDuplicates } from "./manifests.ts";
import type { Manifest } from "./manifests.ts";
import { sortManifests } from "./order.ts";
import { manifestsFromHelmOutput, manifestsFromKustomizeOutput } from "./render/output.ts";
import { renderPlain } from "./render/plain.ts";
import type { Settings } from "./settings.ts";
import { wire } from "./wire.ts";
import { serializeStream, serializeYamlStream } from "./yaml-io.ts";

export async function assemble(
  rendered: Rendered,
  settings: Settings,
  output: "json" | "yaml",
): Promise<GenerateResult> {
  let manifests: Manifest[];
  let skipped: GenerateResult["skipped"] = [];
  switch (rendered.sourceType) {
    case "directory": {
      const plain = await renderPlain(settings);
      manifests = plain.manifests;
      skipped = plain.skipped;
      break;
    }
    case "kustomize":
      manifests = manifestsFromKustomizeOutput(rendered.origin, rendered.output);
      break;
    case "helm":
      manifests = manifestsFromHelmOutput(rendered.output);
      break;
  }

  checkDuplicates(manifests, settings.namespace);
  const report = wire(manifests, {
    defaultNamespace: settings.namespace,
    waiter: settings.waiter,
    allowUnmatchedMigrators: settings.allowUnmatchedMigrators,
  });
  const sorted = sortManifests(manifests);
  const objects = sorted.map((m) => m.object);
  const stream = output === "yaml" ? serializeYamlStream(objects) : serializeStream(objects);
  return { output: stream, settings, sourceType: rendered.sourceType, manifests: sorted, report, skipped };
}
