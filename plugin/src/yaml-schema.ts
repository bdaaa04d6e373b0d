// The YAML schema Kubernetes and Argo CD read manifests with, for js-yaml.
//
// Argo CD and the API machinery read YAML with sigs.k8s.io/yaml: go-yaml v2 decodes into interface{},
// then the value is converted to JSON. That is neither YAML 1.2 nor full YAML 1.1, so the plugin
// resolves plain scalars exactly as go-yaml v2's `resolve` does:
//   - booleans: y Y yes Yes YES true True TRUE on On ON (and the n/no/false/off forms);
//   - null: empty, ~, null, Null, NULL;
//   - a scalar starting with a digit or a sign: underscores removed, then Go's strconv.ParseInt with
//     base 0 (decimal, 0x hex, 0o or leading-0 octal, 0b binary), then ParseUint, then a float if it
//     matches `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`; out-of-range floats stay strings;
//   - a scalar starting with "." : .inf/.Inf/.INF and .nan forms, else Go's ParseFloat;
//   - anything else (and every quoted scalar) is a string.
// What YAML 1.1 adds beyond that, Kubernetes does not have: `12:30` is the string "12:30", not 750
// (no base-60), and `2024-01-02` stays the string "2024-01-02" (go-yaml v2 hands timestamps to
// interface{} as their text). `<<` merge keys work. Infinity and NaN cannot be written as JSON, so
// sigs.k8s.io/yaml refuses them; the plugin does the same (see `nonJsonNumber`).
import { DUMP_SCHEMA, FAILSAFE_SCHEMA, NOT_RESOLVED, defineScalarTag, mergeTag } from "js-yaml";
import type { Schema } from "js-yaml";

const TRUE = new Set(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"]);
const FALSE = new Set(["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"]);
const NULL = new Set(["", "~", "null", "Null", "NULL"]);
const SPECIAL_FLOATS = new Map<string, number>([
  [".nan", NaN],
  [".NaN", NaN],
  [".NAN", NaN],
  [".inf", Infinity],
  [".Inf", Infinity],
  [".INF", Infinity],
  ["+.inf", Infinity],
  ["+.Inf", Infinity],
  ["+.INF", Infinity],
  ["-.inf", -Infinity],
  ["-.Inf", -Infinity],
  ["-.INF", -Infinity],
]);
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
/** Go's ParseFloat syntax for decimal input (what can follow a leading "."). */
const GO_DECIMAL_FLOAT = /^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$/;
const DIGITS_AND_SIGNS = ["-", "+", ..."0123456789"];

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

export type Scalar = string | number | boolean | null;

/** How go-yaml v2 resolves a plain (unquoted, untagged) scalar, as a JSON value. */
export function resolvePlainScalar(source: string): Scalar {
  if (TRUE.has(source)) return true;
  if (FALSE.has(source)) return false;
  if (NULL.has(source)) return null;
  const special = SPECIAL_FLOATS.get(source);
  if (special !== undefined) return special;
  const first = source[0] ?? "";
  if (first === ".") return goParseFloat(source) ?? source;
  if (DIGITS_AND_SIGNS.includes(first)) return resolveNumber(source) ?? source;
  return source;
}

function resolveNumber(source: string): number | undefined {
  const plain = source.replaceAll("_", "");
  const integer = goParseInt(plain);
  if (integer !== undefined && integer >= INT64_MIN && integer <= UINT64_MAX) {
    // ParseInt for int64, else ParseUint (which takes no sign) for the rest of uint64.
    if (integer <= INT64_MAX || !/^[-+]/.test(plain)) return Number(integer);
  }
  if (YAML_STYLE_FLOAT.test(plain)) return goParseFloat(plain);
  return undefined;
}

/** strconv.ParseInt(s, 0, …) syntax: an optional sign, then 0x/0o/0b, a leading-0 octal, or decimal. */
function goParseInt(s: string): bigint | undefined {
  const match = /^([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (match === null) return undefined;
  const sign = match[1] === "-" ? -1n : 1n;
  const body = match[2] ?? "";
  let value: bigint;
  if (/^0[oO]/.test(body)) value = BigInt(`0o${body.slice(2)}`);
  else if (/^0[0-7]+$/.test(body)) value = BigInt(`0o${body.slice(1)}`);
  else value = BigInt(body.toLowerCase());
  return sign * value;
}

/** strconv.ParseFloat for decimal text; undefined when Go would fail (syntax, or out of range). */
function goParseFloat(s: string): number | undefined {
  if (!GO_DECIMAL_FLOAT.test(s)) return undefined;
  const value = Number(s);
  return Number.isFinite(value) ? value : undefined;
}

/** A resolved number JSON cannot hold (sigs.k8s.io/yaml fails on these when converting to JSON). */
export function nonJsonNumber(value: unknown): value is number {
  return typeof value === "number" && !Number.isFinite(value);
}

const firstChars = (values: Iterable<string>): string[] => [...new Set([...values].map((v) => v.charAt(0)))];

const nullTag = defineScalarTag<null>("tag:yaml.org,2002:null", {
  implicit: true,
  implicitFirstChars: firstChars(NULL),
  resolve: (source) => (NULL.has(source) ? null : NOT_RESOLVED),
  identify: (value) => value === null,
  represent: () => "null",
});

const boolTag = defineScalarTag<boolean>("tag:yaml.org,2002:bool", {
  implicit: true,
  implicitFirstChars: firstChars([...TRUE, ...FALSE]),
  resolve: (source) => (TRUE.has(source) ? true : FALSE.has(source) ? false : NOT_RESOLVED),
  identify: (value) => typeof value === "boolean",
  represent: (value) => (value === true ? "true" : "false"),
});

const numberTag = (name: string, accept: (value: number) => boolean) =>
  defineScalarTag<number>(name, {
    implicit: true,
    implicitFirstChars: [".", ...DIGITS_AND_SIGNS],
    resolve: (source) => {
      const value = resolvePlainScalar(source);
      return typeof value === "number" && accept(value) ? value : NOT_RESOLVED;
    },
    identify: (value) => typeof value === "number" && accept(value),
    represent: (value) => String(value),
  });
const intTag = numberTag("tag:yaml.org,2002:int", Number.isInteger);
const floatTag = numberTag("tag:yaml.org,2002:float", () => true);

/** `!!timestamp` only when written explicitly; go-yaml v2 gives interface{} the text, so do we. */
const timestampTag = defineScalarTag<string>("tag:yaml.org,2002:timestamp", {
  resolve: (source) => source,
  identify: () => false,
});

/** `!!binary`: go-yaml v2 decodes the base64 into the bytes of a string. */
const binaryTag = defineScalarTag<string>("tag:yaml.org,2002:binary", {
  resolve: (source) => {
    const compact = source.replace(/\s/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) return NOT_RESOLVED;
    return Buffer.from(compact, "base64").toString("utf8");
  },
  identify: () => false,
});

/** Manifests as Kubernetes reads them: strings, sequences, mappings and go-yaml v2's scalars. */
export const KUBERNETES_SCHEMA: Schema = FAILSAFE_SCHEMA.withTags(
  nullTag,
  boolTag,
  intTag,
  floatTag,
  mergeTag,
  timestampTag,
  binaryTag,
);

/**
 * Never read or written as a tag: a plain scalar that go-yaml v2 (and so KUBERNETES_SCHEMA) would not read
 * as a string, whatever YAML 1.2 says (`0X1F`, `0B1`, `y`, `on`, `.inf`), or that
 * would read as a document marker. Where the dumper would write a
 * string plainly, it asks the schema what the text resolves to; this tag makes it quote these too.
 */
/** A key or value starting a line with `---` or `...` would end the document (js-yaml writes keys plainly). */
const DOCUMENT_MARKER = /^(---|\.\.\.)(\s|$)/;

const goYamlNonStringTag = defineScalarTag<string>("tag:digest-migrations,2026:go-yaml-v2-non-string", {
  implicit: true,
  implicitFirstChars: null,
  resolve: (source) =>
    typeof resolvePlainScalar(source) !== "string" || DOCUMENT_MARKER.test(source) ? source : NOT_RESOLVED,
  identify: () => false,
});

/** For writing YAML: js-yaml's dump schema, quoting every string YAML 1.2 or go-yaml v2 would misread. */
export const OUTPUT_SCHEMA: Schema = DUMP_SCHEMA.withTags(goYamlNonStringTag);
