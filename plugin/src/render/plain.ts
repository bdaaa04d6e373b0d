// A plain directory of manifests, read as Argo CD's directory source reads it (reposerver findManifests):
// - candidates are files named *.yaml, *.yml or *.json (other files, binaries included, are never read);
// - `include`/`exclude` globs filter candidates by path relative to the application directory (picomatch,
//   dotfiles included; a pattern without `/` also matches a file's basename in any directory, as Argo CD's
//   `*` crosses directories);
// - a file containing `+argocd:skip-file-rendering` is skipped;
// - a YAML file may hold many documents; a JSON file holds one object;
// - a file that cannot be read as manifests (syntax error, not text, or documents that are not objects) is
//   an error when it looks like a manifest (it contains `apiVersion`, `kind` and `metadata`), and is
//   skipped otherwise (e.g. a values file or a binary blob with a .yaml name) — Argo CD's rule, so an
//   Application renders the same objects with and without the plugin.
import { readFileSync } from "node:fs";
import picomatch from "picomatch";
import { PluginError, where } from "../errors.ts";
import { manifestsFrom, objectProblem } from "../manifests.ts";
import type { Manifest } from "../manifests.ts";
import type { Settings } from "../settings.ts";
import { walk } from "../source/files.ts";
import { ManifestSyntaxError, parseJsonDocument, parseYamlStream } from "../yaml-io.ts";
import type { SourceDocument } from "../yaml-io.ts";

export const SKIP_MARKER = "+argocd:skip-file-rendering";
const MANIFEST_FILE = /\.(ya?ml|json)$/;

export interface PlainResult {
  manifests: Manifest[];
  skipped: { rel: string; reason: string }[];
}

type PlainSettings = Pick<
  Settings,
  "dir" | "boundary" | "include" | "exclude" | "recurse" | "maxFileSize" | "maxTotalSize"
>;

export async function renderPlain(settings: PlainSettings): Promise<PlainResult> {
  const include = settings.include === undefined ? undefined : globMatcher(settings.include);
  const exclude = settings.exclude === undefined ? undefined : globMatcher(settings.exclude);
  const { files, skipped } = await walk(settings.dir, {
    boundary: settings.boundary,
    recurse: settings.recurse,
    maxFileSize: settings.maxFileSize,
    maxTotalSize: settings.maxTotalSize,
    accept: (rel) => MANIFEST_FILE.test(rel) && !(exclude?.(rel) ?? false) && (include?.(rel) ?? true),
  });
  const manifests: Manifest[] = [];
  for (const file of files) {
    const bytes = readFileSync(file.real);
    const result = readManifestFile(file.rel, bytes);
    if (result.ok) manifests.push(...result.manifests);
    else skipped.push({ rel: file.rel, reason: result.reason });
  }
  return { manifests, skipped };
}

/** A path matcher; a pattern without `/` also matches the basename, as Argo CD's `*` crosses directories. */
export function globMatcher(pattern: string): (rel: string) => boolean {
  const full = picomatch(pattern, { dot: true });
  if (pattern.includes("/")) return full;
  return (rel) => full(rel) || full(rel.slice(rel.lastIndexOf("/") + 1));
}

export type FileResult = { ok: true; manifests: Manifest[] } | { ok: false; reason: string };

/** Reads one candidate file: its objects, a reason to skip it, or a PluginError naming file and line. */
export function readManifestFile(rel: string, bytes: Uint8Array): FileResult {
  const text = decodeText(bytes);
  if (text === undefined) {
    if (looksLikeManifest(Buffer.from(bytes).toString("latin1"))) {
      throw new PluginError(`${rel}: not a UTF-8 text file but looks like a manifest`);
    }
    return { ok: false, reason: "not a text file" };
  }
  if (text.includes(SKIP_MARKER)) return { ok: false, reason: `contains ${SKIP_MARKER}` };
  let documents: SourceDocument[];
  try {
    if (rel.endsWith(".json")) {
      const doc = parseJsonDocument(text);
      if (Array.isArray(doc.value)) {
        throw new PluginError(`${where(rel, 1)}: a JSON file must hold one object, not a list`);
      }
      documents = [doc];
    } else {
      documents = parseYamlStream(text);
    }
  } catch (error) {
    if (!(error instanceof ManifestSyntaxError)) throw error;
    // An alias bomb is refused whatever else the file holds.
    if (looksLikeManifest(text) || error.exhaustion) {
      throw new PluginError(`${where(rel, error.line)}: ${error.message}`);
    }
    return { ok: false, reason: `not a manifest (${error.message})` };
  }
  const bad = documents.find((d) => d.value !== null && d.value !== undefined && objectProblem(d.value) !== undefined);
  if (bad !== undefined && !looksLikeManifest(text)) {
    return { ok: false, reason: `not a manifest (${objectProblem(bad.value)})` };
  }
  return { ok: true, manifests: manifestsFrom(rel, documents) };
}

/** Argo CD's test for "this was meant to be a manifest": it mentions apiVersion, kind and metadata. */
function looksLikeManifest(text: string): boolean {
  return /apiVersion"?\s*:/.test(text) && /kind"?\s*:/.test(text) && /metadata"?\s*:/.test(text);
}

/** UTF-8 (an initial BOM dropped) or UTF-16 with a BOM; undefined for anything else, or text holding NUL. */
function decodeText(bytes: Uint8Array): string | undefined {
  let text: string;
  try {
    if (bytes[0] === 0xff && bytes[1] === 0xfe) text = new TextDecoder("utf-16le", { fatal: true }).decode(bytes);
    else if (bytes[0] === 0xfe && bytes[1] === 0xff) text = new TextDecoder("utf-16be", { fatal: true }).decode(bytes);
    else text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return text.includes("\u0000") ? undefined : text;
}
