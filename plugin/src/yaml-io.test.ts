import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import t from "tap";
import {
  DEFAULT_PARSE_LIMITS,
  MIN_PIECE,
  ManifestSyntaxError,
  parseJsonDocument,
  parseWholeStream,
  parseYamlStream,
  serializeStream,
  serializeYamlStream,
} from "./yaml-io.ts";

t.test("reads YAML as Kubernetes does (go-yaml v2 booleans and octals, merge keys), with document lines", async (t) => {
  const docs = parseYamlStream("a: yes\nb: 0777\nc: &x {k: 1}\nd:\n  <<: *x\n  z: 2\n---\n\n# c\nkind: X\n---\n");
  t.same(docs, [
    { value: { a: true, b: 511, c: { k: 1 }, d: { k: 1, z: 2 } }, line: 1 },
    { value: { kind: "X" }, line: 10 },
    // An empty document has no line of its own: it takes the line of the content before it.
    { value: null, line: 10 },
  ]);
  t.same(parseYamlStream(""), []);
});

const errors: [string, string, number, RegExp][] = [
  ["unterminated flow", "a: 1\nb: [\n", 3, /indentation/],
  ["duplicate key", "a: 1\na: 2\n", 2, /duplicated mapping key/],
  ["unknown tag", "a: 1\nb: !Ref x\n", 2, /unknown scalar tag/],
  [
    "nesting deeper than the limit",
    `a: ${"[".repeat(1001)}${"]".repeat(1001)}\n`,
    1,
    /nesting exceeded maxDepth \(1000\)/,
  ],
  ["infinity (JSON has none)", "---\na: 1\nb: .inf\n", 2, /\.inf cannot be represented in JSON/],
  ["bad indentation", "---\nfoo: bar\n  baz: 1\n", 3, /mapping/i],
  ["error in the second document", "a: 1\n---\nb: 2\nc: [}\n", 4, /./],
  ["an alias inside the node it names", "a: 1\n---\nb: &x\n- *x\n", 3, /alias refers to a node that contains it/],
  ["a mapping holding itself", "a: &x\n  b: *x\n", 1, /alias refers to a node that contains it/],
];
for (const [name, text, line, message] of errors) {
  t.test(`a syntax error names its line: ${name}`, async (t) => {
    const error = t.throws(() => parseYamlStream(text)) as unknown;
    t.ok(error instanceof ManifestSyntaxError);
    t.equal((error as ManifestSyntaxError).line, line);
    t.match((error as Error).message, message);
    t.notMatch((error as Error).message, /\n/);
  });
}

t.test("an alias bomb is refused quickly", async (t) => {
  const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
  for (let i = 1; i < 12; i++) {
    const prev = String.fromCharCode(96 + i);
    const cur = String.fromCharCode(97 + i);
    levels.push(`${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(",")}]`);
  }
  const start = performance.now();
  const error = t.throws(() => parseYamlStream(levels.join("\n") + "\n")) as Error;
  t.match(error.message, /resource exhaustion/);
  t.ok(error instanceof ManifestSyntaxError && error.exhaustion);
  t.ok(performance.now() - start < 2000, "bounded time");
});

t.test("JSON syntax errors name the line", async (t) => {
  t.same(parseJsonDocument('{"a": [1]}'), { value: { a: [1] }, line: 1 });
  const error = t.throws(() => parseJsonDocument('{\n "a": 1,\n}')) as ManifestSyntaxError;
  t.equal(error.line, 3);
});

t.test("anchors used a few times are fine", async (t) => {
  const [doc] = parseYamlStream("env: &e [{name: A, value: x}]\nfirst: *e\nsecond: *e\n");
  const env = [{ name: "A", value: "x" }];
  t.same(doc?.value, { env, first: env, second: env });
});

t.test("the output stream is JSON documents that read back unchanged, also as YAML", async (t) => {
  const objects = [
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "a" },
      data: { x: "yes", y: "0777", z: "null", t: "12:30", d: "2024-01-02", o: "on", e: "1e3", n: "" },
    },
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "b" } },
  ];
  const out = serializeStream(objects);
  t.ok(out.endsWith("}\n"));
  t.ok(out.startsWith("---\n{"), "opens with a document marker, never with {");
  t.equal(out.split(/^---$/m).length - 1, objects.length, "one marker per document");
  t.same(
    parseYamlStream(out).map((d) => d.value),
    objects,
  );
  t.same(
    parseYamlStream(serializeYamlStream(objects)).map((d) => d.value),
    objects,
  );
  t.equal(serializeStream([]), "");
});

t.test("YAML output quotes every string go-yaml v2 or YAML 1.2 would read as something else", async (t) => {
  // Go's ParseInt takes upper-case prefixes (0X1F, 0B1, 0O17) that YAML 1.2 does not, and js-yaml writes a
  // key "--- n" plainly: both found by property tests ({"0X0": 0} read back as {0: 0}; a document split).
  const words = ["0X0", "0X1F", "0B1", "0O17", "-0X1", "+0x1", "017", "08", "1_000", "y", "N", "on", "Off", "~"];
  words.push("Null", "", ".inf", "-.Inf", ".nan", "1e3", ".5e3", "1.", "-0", "12:30", "2024-01-02", "<<", "=");
  words.push("--- n", "---", "... x"); // a key that would start a line as a document marker
  const object = Object.fromEntries(words.map((w) => [w, w]));
  const text = serializeYamlStream([object]);
  for (const w of words) t.ok(text.includes(`'${w}': '${w}'\n`), `${JSON.stringify(w)} is quoted`);
  t.same(parseYamlStream(text)[0]?.value, object, "and reads back as the same strings");
  t.match(
    serializeYamlStream([{ name: "web", "0.0.1": "1.2.3" }]),
    /^name: web\n0\.0\.1: 1\.2\.3\n$/,
    "others stay plain",
  );
});

t.test("any JSON value survives both output forms", async (t) => {
  // Through JSON once, so the values are what JSON.parse makes (plain prototypes, no -0).
  const streams = fc
    .array(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 4 })), { maxLength: 3 })
    .map((v) => JSON.parse(JSON.stringify(v)) as unknown[]);
  fc.assert(
    fc.property(
      streams,
      (objects) =>
        isDeepStrictEqual(
          parseYamlStream(serializeStream(objects)).map((d) => d.value),
          objects,
        ) &&
        isDeepStrictEqual(
          parseYamlStream(serializeYamlStream(objects)).map((d) => d.value),
          objects,
        ),
    ),
    { numRuns: 300 },
  );
  t.pass("300 random streams read back unchanged");
});

/** The outcome of a parse, comparable: the documents, or the error's line and message. */
function outcome(parse: () => unknown): unknown {
  try {
    return { documents: parse() };
  } catch (error) {
    if (!(error instanceof ManifestSyntaxError)) throw error;
    return { line: error.line, message: error.message, exhaustion: error.exhaustion };
  }
}

// parseYamlStream reads a stream piece by piece, split before lines that are exactly `---` (here before
// every one of them: no least piece size); the whole stream read at once is the reference. These put a
// `---` line where a piece would end in the middle of something, or where the piece alone would read
// differently than in the stream.
const pieceEdges: [string, string][] = [
  ["a quoted scalar across the marker", 'a: "x\n---\ny"\n'],
  ["a single-quoted scalar across the marker", "a: 'x\n---\ny'\n"],
  ["a flow collection across the marker", "a: [1,\n---\n2]\n"],
  ["an anchor with no node before the marker", "a: &x\n---\nb: *x\n"],
  ["a tag with no node before the marker", "a: !!str\n---\nb: 1\n"],
  ["a root block scalar", "--- |\ntext\n---\nmore\n"],
  ["a root plain scalar", "text\n---\nmore\n"],
  ["directives before the marker", "a: 1\n...\n%YAML 1.2\n---\nb: 2\n"],
  ["a tag directive", "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n---\nb: 2\n"],
  ["empty documents", "---\n---\n---\na: 1\n---\n"],
  ["CRLF line breaks", "a: 1\r\n---\r\nb: 2\r\n---\r\n"],
  ["a byte order mark", "\uFEFFa: 1\n---\nb: 2\n"],
  ["an explicit end", "a: 1\n...\n---\nb: 2\n"],
  ["a syntax error after the marker", "a: 1\n---\nb: [\n"],
  ["a duplicate key in a later document", "a: 1\n---\nb: 1\nb: 2\n"],
  ["a marker with content after it", "a: 1\n--- b\n---\nc: 2\n"],
  ["a sequence at column 0", "- a\n---\n- b\n"],
  ["an alias to the previous document's anchor", "a: &x 1\n---\nb: *x\n"],
  ["infinity in a later document", "a: 1\n---\nb: .inf\n"],
];
for (const [name, text] of pieceEdges) {
  t.test(`read piece by piece as the whole stream reads: ${name}`, async (t) => {
    t.same(
      outcome(() => parseYamlStream(text, DEFAULT_PARSE_LIMITS, 0)),
      outcome(() => parseWholeStream(text)),
    );
  });
}

t.test("any stream of these documents reads piece by piece as it reads whole", async (t) => {
  // Mostly documents that parse (a mapping, a sequence, a scalar), separated by `---` lines, with lines
  // that leave something open or read differently at the end of a piece mixed in.
  const mapping = ["a: 1", "b: &x [1, 2]", "c: *x", "<<: {m: 1}", "d: |", "  block", "h: !!str 5", "k: yes", "l: .inf"];
  const sequence = ["- item", "- &y {n: 1}", "- *y", "-", "  - nested"];
  const other = ["plain", "  indented", "'quoted'", "# comment", ""];
  const tricky = ["--- |", "--- >-", "...", "%YAML 1.2", "e: 'q", 'f: "q', "g: [1,", "]", "? k", ": v", "i: &y", "\t"];
  const lines = (vocabulary: string[]) =>
    fc.array(fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...vocabulary) }, fc.constantFrom(...tricky)), {
      maxLength: 5,
    });
  const documents = fc.array(fc.oneof(lines(mapping), lines(sequence), lines(other)), { maxLength: 6 });
  const streams = fc
    .tuple(documents, fc.constantFrom("\n", "\r\n"), fc.boolean(), fc.boolean())
    .map(
      ([docs, eol, first, last]) =>
        (first ? `---${eol}` : "") + docs.map((d) => d.join(eol)).join(`${eol}---${eol}`) + (last ? eol : ""),
    );
  fc.assert(
    fc.property(streams, (text) =>
      isDeepStrictEqual(
        outcome(() => parseYamlStream(text, DEFAULT_PARSE_LIMITS, 0)),
        outcome(() => parseWholeStream(text)),
      ),
    ),
    { numRuns: 3000 },
  );
  t.pass("3000 random streams");
});

t.test("a renderer's long output is read in pieces of MIN_PIECE or more, as it reads whole", async (t) => {
  const docs = Array.from(
    { length: 1200 },
    (_, i) =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c${i}\ndata:\n  num: "${i}"\n  f: |\n    line ${i}\n`,
  );
  const text = `${docs.join("---\n")}---\n\n---\n# last\nkind: X\n`;
  t.ok(text.length > 4 * MIN_PIECE, "several pieces");
  const read = parseYamlStream(text);
  t.same(read, parseWholeStream(text));
  t.equal(read.length, 1202);
  t.same(read[1], {
    value: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c1" }, data: { num: "1", f: "line 1\n" } },
    line: 10,
  });
  t.same(read.at(-1), { value: { kind: "X" }, line: text.split("\n").indexOf("kind: X") + 1 });
});
