// Parsing and serialising manifests, in one module so the parser can be swapped for a faster one.
//
// Input is read the way Argo CD and the Kubernetes API machinery read the same files (sigs.k8s.io/yaml over
// go-yaml v2; see yaml-schema.ts): `yes`/`on` are booleans, `0777` is octal, `<<` merge keys work, but `12:30`
// and `2024-01-02` stay strings. The plugin must see the objects Argo CD would see. Output is a stream of
// JSON documents, each opened by `---`: Argo CD splits generate's stdout as a YAML stream, JSON is valid
// YAML, and JSON cannot be misread under any YAML schema (a string "yes" stays a string), so the objects
// survive the round trip exactly (see serializeStream for why the stream never starts with `{`).
import { EVENT_ALIAS, EVENT_DOCUMENT, YAMLException, constructFromEvents, dump, parseEvents } from "js-yaml";
import type { Event } from "js-yaml";
import { KUBERNETES_SCHEMA, OUTPUT_SCHEMA, nonJsonNumber } from "./yaml-schema.ts";

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
  /** True when the document was refused by a resource limit rather than for its syntax. */
  readonly exhaustion: boolean;
  constructor(line: number, message: string, exhaustion = false) {
    super(message);
    this.name = "ManifestSyntaxError";
    this.line = line;
    this.exhaustion = exhaustion;
  }
}

export interface ParseLimits {
  /**
   * Most values one document may expand to through aliases (`*name`). An alias bomb (nested anchors
   * that each repeat the previous one several times) is small on disk but grows exponentially once
   * written out; such a document is refused before anything is serialised.
   */
  maxExpandedValues: number;
  /** Deepest nesting of mappings and sequences (CRD schemas nest deep; a hostile file nests deeper). */
  maxDepth: number;
}

export const DEFAULT_PARSE_LIMITS: ParseLimits = { maxExpandedValues: 1_000_000, maxDepth: 1000 };

/**
 * Parses a YAML stream (multi-document) into plain values, with each document's starting line.
 *
 * The stream is read piece by piece, each piece ending before a line that is exactly `---` once it holds
 * `minPiece` characters (see documentPieces), and the parser's events for one piece are dropped before the
 * next is read: the events of a renderer's whole output (thousands of documents) never exist at once, which
 * spares the garbage collector copying them (on 2,000 objects of kubectl's output: ~15 % off the time
 * after kubectl exits, a sixth off peak memory). When any piece fails, the whole stream is read at once
 * instead (parseWholeStream), so a syntax error reads exactly as it always has.
 */
export function parseYamlStream(
  text: string,
  limits: ParseLimits = DEFAULT_PARSE_LIMITS,
  minPiece = MIN_PIECE,
): SourceDocument[] {
  return checkedDocuments(text, parsePieces(text, limits, minPiece) ?? parseWhole(text, limits), limits);
}

/** The same documents read from the whole stream at once: the reference parseYamlStream agrees with. */
export function parseWholeStream(text: string, limits: ParseLimits = DEFAULT_PARSE_LIMITS): SourceDocument[] {
  return checkedDocuments(text, parseWhole(text, limits), limits);
}

/** Parsed documents before the per-document checks: values, and where each document starts in the text. */
interface Parsed {
  values: unknown[];
  starts: DocumentStart[];
}

interface DocumentStart {
  /** Offset of the document's first content in the stream; -1 for an empty document. */
  offset: number;
  aliases: boolean;
}

function parseWhole(text: string, limits: ParseLimits): Parsed {
  try {
    const events = parseEvents(text, { maxDepth: limits.maxDepth });
    const values = constructFromEvents(events, { source: text, schema: KUBERNETES_SCHEMA, maxTotalMergeKeys: -1 });
    return { values, starts: documentStarts(events, 0) };
  } catch (error) {
    if (!(error instanceof YAMLException)) throw error;
    const line = error.mark === undefined ? 1 : error.mark.line + 1;
    throw new ManifestSyntaxError(line, oneLine(error.reason));
  }
}

/**
 * The least a piece holds (in characters): a file of a few documents is read in one piece, and the parser's
 * set-up is paid every few dozen documents of a renderer's output rather than for each. Pieces of 16 kB
 * parse as fast as single documents; from a few hundred kB on, as slowly as the whole stream. Tests pass 0
 * to split before every `---` line.
 */
export const MIN_PIECE = 16 * 1024;

/** Reads the stream piece by piece; undefined when any piece fails to parse (the whole stream says why). */
function parsePieces(text: string, limits: ParseLimits, minPiece: number): Parsed | undefined {
  const parsed: Parsed = { values: [], starts: [] };
  for (const [start, end] of documentPieces(text, minPiece)) {
    const piece = text.slice(start, end);
    try {
      const events = parseEvents(piece, { maxDepth: limits.maxDepth });
      parsed.values.push(
        ...constructFromEvents(events, { source: piece, schema: KUBERNETES_SCHEMA, maxTotalMergeKeys: -1 }),
      );
      parsed.starts.push(...documentStarts(events, start));
    } catch (error) {
      if (error instanceof YAMLException) return undefined;
      throw error;
    }
  }
  return parsed;
}

/**
 * [start, end) ranges covering the text, each boundary placed before a line that is exactly `---` (LF or
 * CRLF) once the piece holds `minPiece` characters. Such a line always starts a new document: YAML forbids a
 * line starting with `---` inside any node (c-forbidden), js-yaml ends plain and block scalars there, and a
 * construct it would leave open (a quoted scalar, a flow collection) makes its piece fail, which sends the
 * stream to parseWholeStream. Each piece after the first starts with its `---`, so the parser sees every
 * document exactly as in the whole stream, and documents share nothing the parser keeps (anchors, tag
 * directives and node tags are per document; the merge-key budget is unlimited). Directives end up in the
 * piece before their `---` and make it fail.
 */
function documentPieces(text: string, minPiece: number): [number, number][] {
  const pieces: [number, number][] = [];
  let start = 0;
  for (let i = text.indexOf("\n---"); i >= 0; i = text.indexOf("\n---", i + 1)) {
    const after = i + 4;
    if (i + 1 - start < minPiece || (text[after] !== "\n" && !text.startsWith("\r\n", after))) continue;
    pieces.push([start, i + 1]);
    start = i + 1;
  }
  if (start < text.length) pieces.push([start, text.length]);
  return pieces;
}

/** Lines, the alias-expansion limit and JSON's number range, document by document. */
function checkedDocuments(text: string, parsed: Parsed, limits: ParseLimits): SourceDocument[] {
  const lines = lineStarts(text);
  // Only `.inf`/`.nan` (any case, any sign) resolve to numbers JSON cannot hold.
  const mayHoldNonJson = /\.(inf|nan)/i.test(text);
  let previousLine = 1;
  return parsed.values.map((value, index) => {
    const { offset, aliases } = parsed.starts[index] ?? { offset: -1, aliases: false };
    // An empty document has no text of its own: it takes the line of the document before it.
    const line = offset < 0 ? previousLine : lineAt(lines, offset);
    previousLine = line;
    const size = aliases ? expandedSize(value, limits.maxExpandedValues) : 0;
    if (size === Infinity) {
      // go-yaml v2 refuses it too ("anchor 'x' value contains itself").
      throw new ManifestSyntaxError(line, "an alias refers to a node that contains it: the document has no end");
    }
    if (size > limits.maxExpandedValues) {
      throw new ManifestSyntaxError(
        line,
        `aliases expand this document to more than ${limits.maxExpandedValues} values (refused: resource exhaustion)`,
        true,
      );
    }
    const bad = mayHoldNonJson ? findNonJsonNumber(value) : undefined;
    if (bad !== undefined) {
      throw new ManifestSyntaxError(line, `${bad} cannot be represented in JSON (as Kubernetes reads YAML)`);
    }
    return { value, line };
  });
}

/**
 * Per document: the offset of its first content in the stream (events' offsets are relative to a piece
 * starting at `base`) and whether it holds aliases. Only the first event of a document is asked for its
 * offset; the rest are only checked for aliases.
 */
function documentStarts(events: readonly Event[], base: number): DocumentStart[] {
  const out: DocumentStart[] = [];
  let current: DocumentStart | undefined;
  let first = false;
  for (const event of events) {
    if (event.type === EVENT_DOCUMENT) {
      current = { offset: -1, aliases: false };
      out.push(current);
      first = true;
    } else if (current !== undefined) {
      if (first) {
        const offset = eventOffset(event);
        current.offset = offset < 0 ? -1 : base + offset;
        first = false;
      }
      if (event.type === EVENT_ALIAS) current.aliases = true;
    }
  }
  return out;
}

/** Where an event's text starts (its anchor or tag if it has one); -1 when it has no text. */
function eventOffset(event: Event): number {
  let offset = -1;
  const consider = (candidate: number): void => {
    if (candidate >= 0 && (offset < 0 || candidate < offset)) offset = candidate;
  };
  if ("anchorStart" in event) consider(event.anchorStart);
  if ("tagStart" in event) consider(event.tagStart);
  if ("start" in event) consider(event.start);
  if ("valueStart" in event) consider(event.valueStart);
  return offset;
}

/**
 * How many values a document has once every alias is written out, counting up to just past `limit`;
 * Infinity when an alias refers to a node that contains it.
 */
function expandedSize(root: unknown, limit: number): number {
  const sizes = new Map<object, number>();
  const size = (value: unknown): number => {
    if (value === null || typeof value !== "object") return 1;
    const known = sizes.get(value);
    if (known !== undefined) return known;
    // Met again before its count is known: an alias inside the node it names, which never ends.
    sizes.set(value, Infinity);
    let total = 1;
    for (const child of Array.isArray(value) ? value : Object.values(value)) {
      total += size(child);
      if (total > limit) break;
    }
    sizes.set(value, total);
    return total;
  };
  return size(root);
}

/** The first number JSON cannot hold (Infinity, NaN) in a document, as written in YAML. */
function findNonJsonNumber(root: unknown): string | undefined {
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (nonJsonNumber(value)) return Number.isNaN(value) ? ".nan" : value > 0 ? ".inf" : "-.inf";
    if (value === null || typeof value !== "object" || seen.has(value)) continue;
    seen.add(value);
    const children: unknown[] = Array.isArray(value) ? value : Object.values(value);
    for (const child of children) stack.push(child);
  }
  return undefined;
}

/** Offsets at which each line starts, for turning offsets into 1-based lines. */
function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}

function lineAt(starts: readonly number[], offset: number): number {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if ((starts[mid] ?? 0) <= offset) low = mid;
    else high = mid - 1;
  }
  return low + 1;
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
    else if (positionMatch?.[1] !== undefined) line = lineAt(lineStarts(text), Number(positionMatch[1]));
    throw new ManifestSyntaxError(line, oneLine(message));
  }
}

/** Collapses a (possibly multi-line, pretty-printed) parser message to its first line. */
function oneLine(message: string): string {
  return (message.split("\n")[0] ?? message).trim();
}

/**
 * The output stream: each object as indented JSON, each document opened by `---`, ending in a newline.
 * The stream must not start with `{`: Argo CD reads generate's output with k8s.io/apimachinery's
 * YAMLOrJSONDecoder, which up to apimachinery v0.32 (Argo CD v2.6 … v3.0) reads a stream whose first
 * character is `{` as concatenated JSON, so a `---` after the first object fails the whole sync. Opened by
 * `---`, the stream is YAML documents (each one JSON, which is YAML) for every version.
 */
export function serializeStream(objects: readonly unknown[]): string {
  return objects.map((o) => `---\n${JSON.stringify(o, null, 2)}\n`).join("");
}

/**
 * The same stream as YAML, for people reading `render --output yaml`. Strings that any YAML 1.1 or 1.2 reader
 * could take for something else ("yes", "12:30", "2024-01-02", "0777") are quoted, so the text reads back
 * as the same values whatever reads it.
 */
export function serializeYamlStream(objects: readonly unknown[]): string {
  return objects.map((o) => dump(o, { schema: OUTPUT_SCHEMA, lineWidth: -1, noRefs: true })).join("---\n");
}
