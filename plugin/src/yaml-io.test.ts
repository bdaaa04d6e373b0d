import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import t from "tap";
import {
  ManifestSyntaxError,
  parseJsonDocument,
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
