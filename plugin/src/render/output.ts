// Reading a renderer's output as manifests: `kustomize build` (or `kubectl kustomize`) and `helm template`
// print a YAML stream; an error names the output's line, and for helm the template it came from (helm's
// `# Source:` comments). Kept apart from the code that runs the renderers (kustomize.ts, helm.ts), which
// is loaded first so that a renderer is already running while this module and the parser load.
import { PluginError } from "../errors.ts";
import type { Manifest } from "../manifests.ts";
import { manifestsFrom } from "../manifests.ts";
import { ManifestSyntaxError, parseYamlStream } from "../yaml-io.ts";

/** Objects of kustomize's output; `origin` names the command (`kubectl kustomize output`) in errors. */
export function manifestsFromKustomizeOutput(origin: string, output: string): Manifest[] {
  try {
    return manifestsFrom(origin, parseYamlStream(output));
  } catch (error) {
    if (error instanceof ManifestSyntaxError) throw new PluginError(`${origin}:${error.line}: ${error.message}`);
    throw error;
  }
}

/** Objects of `helm template` output; each names its template (helm's `# Source:` comment) as its file. */
export function manifestsFromHelmOutput(output: string): Manifest[] {
  let documents;
  try {
    documents = parseYamlStream(output);
  } catch (error) {
    if (error instanceof ManifestSyntaxError) {
      throw new PluginError(`${sourceAt(output, error.line)}:${error.line}: ${error.message}`);
    }
    throw error;
  }
  const sources = sourceComments(output);
  const out: Manifest[] = [];
  for (const doc of documents) {
    out.push(...manifestsFrom(sourceFor(sources, doc.line), [doc]));
  }
  return out;
}

/** Lines of helm's `# Source: <chart>/templates/<file>` comments, in order. */
function sourceComments(output: string): { line: number; source: string }[] {
  const out: { line: number; source: string }[] = [];
  const lines = output.split("\n");
  lines.forEach((l, i) => {
    if (l.startsWith("# Source: ")) out.push({ line: i + 1, source: l.slice("# Source: ".length).trim() });
  });
  return out;
}

function sourceFor(sources: readonly { line: number; source: string }[], line: number): string {
  let found: string | undefined;
  for (const s of sources) {
    if (s.line > line) break;
    found = s.source;
  }
  return found === undefined ? "helm template output" : `helm template output (${found})`;
}

function sourceAt(output: string, line: number): string {
  return sourceFor(sourceComments(output), line);
}
