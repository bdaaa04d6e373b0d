// How Argo CD reads what `generate` prints. argocd-cmp-server splits stdout with gitops-engine's
// kube.SplitYAMLToString (cmpserver/plugin/plugin.go generateManifest), the repo-server turns each piece
// into an unstructured object with kube.SplitYAML (reposerver/repository/repository.go
// runConfigManagementPluginSidecars). Both sit on k8s.io/apimachinery's YAMLOrJSONDecoder, whose
// behaviour depends on the apimachinery version Argo CD pins:
//   - "sniff" — apimachinery ≤ v0.32 (Argo CD v2.6 … v3.0): if the first non-space byte of the stream is
//     `{` the WHOLE stream is read as concatenated JSON values (encoding/json.Decoder); a `---` after the
//     first object is then a JSON syntax error. Otherwise the stream is YAML documents split on `---` lines.
//   - "fallback" — apimachinery ≥ v0.33 (Argo CD v3.1 …): JSON first; if decoding fails after at most one
//     object the rest of the stream is read as YAML; after two or more JSON objects a JSON error stands.
// Empty and `null` documents are dropped. A piece that is not an object, or has no kind, is an error
// (unstructured.UnmarshalJSON: "Object 'Kind' is missing in '…'").
import { parseAllDocuments } from "yaml";

export type StreamDecoder = "sniff" | "fallback";

export class ManifestStreamError extends Error {
  override name = "ManifestStreamError";
}

/** A JSON syntax error as encoding/json reports it, with the byte offset. */
class JsonSyntaxError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.offset = offset;
  }
}

const WS = new Set([" ", "\t", "\n", "\r"]);

function describe(c: string | undefined): string {
  return c === undefined ? "EOF" : `'${c === "'" ? "\\'" : c}'`;
}

/** The end offset of the JSON value starting at `i` (after whitespace), or a JsonSyntaxError. */
function scanValue(s: string, i: number): number {
  while (WS.has(s[i] ?? "")) i++;
  const c = s[i];
  if (c === undefined) throw new JsonSyntaxError("unexpected end of JSON input", i);
  if (c === "{" || c === "[") {
    const close = c === "{" ? "}" : "]";
    i++;
    while (WS.has(s[i] ?? "")) i++;
    if (s[i] === close) return i + 1;
    for (;;) {
      if (c === "{") {
        while (WS.has(s[i] ?? "")) i++;
        if (s[i] !== '"') {
          throw new JsonSyntaxError(
            `invalid character ${describe(s[i])} looking for beginning of object key string`,
            i + 1,
          );
        }
        i = scanValue(s, i);
        while (WS.has(s[i] ?? "")) i++;
        if (s[i] !== ":") throw new JsonSyntaxError(`invalid character ${describe(s[i])} after object key`, i + 1);
        i++;
      }
      i = scanValue(s, i);
      while (WS.has(s[i] ?? "")) i++;
      if (s[i] === ",") {
        i++;
        continue;
      }
      if (s[i] === close) return i + 1;
      const where = c === "{" ? "after object key:value pair" : "after array element";
      throw new JsonSyntaxError(`invalid character ${describe(s[i])} ${where}`, i + 1);
    }
  }
  if (c === '"') {
    for (i++; i < s.length; i++) {
      if (s[i] === "\\") i++;
      else if (s[i] === '"') return i + 1;
      else if (s.charCodeAt(i) < 0x20) throw new JsonSyntaxError("invalid character in string literal", i + 1);
    }
    throw new JsonSyntaxError("unexpected end of JSON input", i);
  }
  for (const word of ["true", "false", "null"]) {
    if (c === word[0]) {
      for (let k = 0; k < word.length; k++) {
        if (s[i + k] !== word[k]) {
          throw new JsonSyntaxError(
            `invalid character ${describe(s[i + k])} in literal ${word} (expecting '${word[k]}')`,
            i + k + 1,
          );
        }
      }
      return i + word.length;
    }
  }
  if (c === "-" || (c >= "0" && c <= "9")) {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(s.slice(i));
    if (m === null || m[0] === "-")
      throw new JsonSyntaxError(`invalid character ${describe(s[i + 1])} in numeric literal`, i + 2);
    return i + m[0].length;
  }
  throw new JsonSyntaxError(`invalid character ${describe(c)} looking for beginning of value`, i + 1);
}

/** JSON values one after the other, as encoding/json.Decoder reads a stream; stops at the first error. */
function decodeJson(s: string, from: number): { values: string[]; end: number; error?: JsonSyntaxError } {
  const values: string[] = [];
  let i = from;
  for (;;) {
    while (WS.has(s[i] ?? "")) i++;
    if (i >= s.length) return { values, end: i };
    try {
      const end = scanValue(s, i);
      values.push(s.slice(i, end));
      i = end;
    } catch (error) {
      if (error instanceof JsonSyntaxError) return { values, end: i, error };
      throw error;
    }
  }
}

/** k8s.io/apimachinery YAMLReader: documents split on lines starting with `---` (plus nothing or a comment). */
function yamlDocuments(s: string): string[] {
  const docs: string[] = [];
  let current: string[] = [];
  for (const line of s.split(/(?<=\n)/)) {
    if (line.startsWith("---")) {
      const rest = line.slice(3).trim();
      if (rest === "" || rest.startsWith("#")) {
        if (current.length > 0) docs.push(current.join(""));
        current = [];
        continue;
      }
    }
    current.push(line);
  }
  if (current.length > 0) docs.push(current.join(""));
  return docs;
}

/** sigs.k8s.io/yaml: one YAML document (YAML 1.1, as go-yaml v2 reads it) as JSON text. */
function yamlToJson(doc: string): string {
  const parsed = parseAllDocuments(doc, { version: "1.1", uniqueKeys: true, merge: true });
  const list = Array.isArray(parsed) ? parsed : [parsed];
  if (list.length === 0) return "null";
  const first = list[0]!;
  if (first.errors.length > 0)
    throw new ManifestStreamError(`failed to unmarshal manifest: ${first.errors[0]!.message.split("\n")[0]}`);
  return JSON.stringify(first.toJS({ maxAliasCount: 100 }) ?? null);
}

function guessJson(s: string): boolean {
  return /^\s*\{/u.test(s.slice(0, 4096));
}

/** kube.SplitYAMLToString: each document of the stream as JSON text, empty and null ones dropped. */
export function splitYamlToString(text: string, decoder: StreamDecoder): string[] {
  const keep = (raws: string[]): string[] => raws.map((r) => r.trim()).filter((r) => r !== "" && r !== "null");
  const fromYaml = (s: string): string[] => keep(yamlDocuments(s).map(yamlToJson));
  if (!guessJson(text)) return fromYaml(text);
  const json = decodeJson(text, 0);
  if (json.error === undefined) return keep(json.values);
  const jsonError = new ManifestStreamError(
    `failed to unmarshal manifest: json: offset ${json.error.offset}: ${json.error.message}`,
  );
  if (decoder === "sniff" || json.values.length > 1) throw jsonError;
  // "fallback": the rest of the stream as YAML, after the whitespace up to the first newline.
  let rest = text.slice(json.end);
  const nl = /^[ \t\r]*\n/.exec(rest);
  if (nl) rest = rest.slice(nl[0].length);
  try {
    return [...keep(json.values), ...fromYaml(rest)];
  } catch {
    throw jsonError;
  }
}

export interface KubeObject {
  apiVersion?: string;
  kind: string;
  metadata?: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

/** kube.SplitYAML of one piece: objects with a kind (unstructured.Unstructured). */
export function toObjects(piece: string, decoder: StreamDecoder): KubeObject[] {
  return splitYamlToString(piece, decoder).map((raw) => {
    const value = JSON.parse(raw) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ManifestStreamError(
        `failed to unmarshal manifest: json: cannot unmarshal ${Array.isArray(value) ? "array" : typeof value} into Go value of type map[string]interface {}`,
      );
    }
    const kind = (value as { kind?: unknown }).kind;
    if (typeof kind !== "string" || kind === "") {
      throw new ManifestStreamError(`failed to unmarshal manifest: Object 'Kind' is missing in '${raw}'`);
    }
    return value as KubeObject;
  });
}
