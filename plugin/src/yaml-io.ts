// Parsing and serialising manifests, in one module so the parser can be swapped for a faster one.
//
// Input is read with YAML 1.1 semantics (`yes`/`on` are booleans, `<<` merge keys work), because that is
// how Argo CD and the Kubernetes API machinery (sigs.k8s.io/yaml over go-yaml) read the same files: the
// plugin must see the objects Argo CD would see. Output is a stream of JSON documents separated by `---`:
// Argo CD splits generate's stdout as a YAML stream, JSON is valid YAML, and JSON cannot be misread under
// either YAML version (a string "yes" stays a string), so the objects survive the round trip exactly.
import { LineCounter, parseAllDocuments, stringify } from "yaml";

/** A parsed document and where it came from. */
export interface SourceDocument {
  /** The document's value (plain JSON: objects, arrays, strings, numbers, booleans, null). */
  value: unknown;
  /** 1-based line of the document's first content line in its file. */
  line: number;
}

/** A document that could not be read, with the 1-based line of the problem. */
export class ManifestSyntaxError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(message);
    this.name = "ManifestSyntaxError";
    this.line = line;
  }
}

export interface ParseLimits {
  /**
   * Most alias (`*name`) expansions per document. An alias bomb (nested anchors that each repeat the
   * previous one) grows exponentially; the yaml package refuses documents whose expansion would exceed
   * this count, which bounds time and memory.
   */
  maxAliasCount: number;
}

export const DEFAULT_PARSE_LIMITS: ParseLimits = { maxAliasCount: 100 };

/** Parses a YAML stream (multi-document) into plain values, with each document's starting line. */
export function parseYamlStream(text: string, limits: ParseLimits = DEFAULT_PARSE_LIMITS): SourceDocument[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, {
    version: "1.1",
    merge: true,
    lineCounter,
    prettyErrors: true,
    uniqueKeys: true,
    strict: true,
  });
  const out: SourceDocument[] = [];
  // An empty stream comes back as an EmptyStream, which is an array with no documents.
  for (const doc of docs) {
    const first = doc.errors[0];
    if (first !== undefined) {
      const line = first.linePos?.[0].line ?? lineCounter.linePos(first.pos[0]).line;
      throw new ManifestSyntaxError(line, oneLine(first.message).replace(/ at line \d+, column \d+:?$/, ""));
    }
    const start = doc.contents?.range[0] ?? doc.range[0];
    const line = lineCounter.linePos(start).line;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: limits.maxAliasCount });
    } catch (error) {
      throw new ManifestSyntaxError(line, oneLine(error instanceof Error ? error.message : String(error)));
    }
    out.push({ value, line });
  }
  return out;
}

/** Parses one JSON document; a syntax error names the line it is on. */
export function parseJsonDocument(text: string): SourceDocument {
  try {
    return { value: JSON.parse(text) as unknown, line: 1 };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const lineMatch = /\(line (\d+) column \d+\)/.exec(message);
    const positionMatch = /position (\d+)/.exec(message);
    let line = 1;
    if (lineMatch?.[1] !== undefined) line = Number(lineMatch[1]);
    else if (positionMatch?.[1] !== undefined) line = lineOf(text, Number(positionMatch[1]));
    throw new ManifestSyntaxError(line, oneLine(message));
  }
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** Collapses a (possibly multi-line, pretty-printed) parser message to its first line. */
function oneLine(message: string): string {
  return (message.split("\n")[0] ?? message).trim();
}

/** The output stream: each object as indented JSON, documents separated by `---`, ending in a newline. */
export function serializeStream(objects: readonly unknown[]): string {
  if (objects.length === 0) return "";
  return objects.map((o) => JSON.stringify(o, null, 2)).join("\n---\n") + "\n";
}

/**
 * The same stream as YAML, for people reading `render --output yaml`. Written with YAML 1.1 rules so a
 * string such as "yes" is quoted and reads back as a string under either YAML version.
 */
export function serializeYamlStream(objects: readonly unknown[]): string {
  return objects.map((o) => stringify(o, { version: "1.1", lineWidth: 0, aliasDuplicateObjects: false })).join("---\n");
}
