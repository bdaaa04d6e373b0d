import t from "tap";
import { resolvePlainScalar } from "./yaml-schema.ts";
import { parseYamlStream } from "./yaml-io.ts";

// What sigs.k8s.io/yaml (go-yaml v2 into interface{}, then JSON) makes of each plain scalar: the value the
// API server stores and Argo CD compares. Rows marked "not YAML 1.1" are where Kubernetes differs from the
// YAML 1.1 spec, and "not YAML 1.2" where it differs from YAML 1.2's core schema.
const plain: [string, unknown, string?][] = [
  ["12:30", "12:30", "not YAML 1.1: no base-60 integers"],
  ["1:20:30", "1:20:30", "not YAML 1.1"],
  ["190:20:30.15", "190:20:30.15", "not YAML 1.1: no base-60 floats"],
  ["2024-01-02", "2024-01-02", "timestamps reach interface{} as their text"],
  ["2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"],
  ["2001-12-14 21:59:43.10 -5", "2001-12-14 21:59:43.10 -5"],
  ["0777", 511, "not YAML 1.2: a leading 0 is octal (Go's ParseInt base 0)"],
  ["0o17", 15],
  ["0O17", 15],
  ["0x1F", 31],
  ["0X1f", 31],
  ["-0x1F", -31],
  ["0b101", 5],
  ["+0b11", 3],
  ["08", 8, "not octal, not an int: ParseInt fails, the float pattern matches"],
  ["1_000", 1000, "underscores are dropped before parsing"],
  ["_1", "_1", "only a digit or a sign starts a number"],
  ["+12", 12],
  ["-0", 0],
  ["0", 0],
  [".5", 0.5],
  ["-.5", -0.5],
  ["1.", 1],
  ["1e3", 1000],
  ["1E-2", 0.01],
  ["1.0", 1, "JSON has one kind of number: 1.0 is 1"],
  ["6.02e23", 6.02e23],
  ["1e400", "1e400", "out of float64 range: ParseFloat fails, so a string"],
  ["99999999999999999999", 1e20, "beyond uint64: a float"],
  // uint64 max (ParseUint). JavaScript numbers keep 53 bits, so the plugin writes 2^64; the API server
  // would keep every digit. Integers this large do not occur in Kubernetes fields (int32/int64 counts).
  ["18446744073709551615", 2 ** 64, "uint64 max: ParseUint"],
  ["-9223372036854775808", -9223372036854775808],
  ["0x", "0x"],
  ["1.2.3", "1.2.3"],
  ["1,000", "1,000"],
  ["+", "+"],
  ["-", "-"],
  [".", "."],
  ["..", ".."],
  [".e3", ".e3"],
  ["inf", "inf"],
  ["Infinity", "Infinity"],
  ["NaN", "NaN"],
  [".iNf", ".iNf"],
  ["yes", true, "not YAML 1.2"],
  ["Yes", true],
  ["YES", true],
  ["y", true, "not YAML 1.2"],
  ["Y", true],
  ["on", true, "not YAML 1.2"],
  ["On", true],
  ["true", true],
  ["True", true],
  ["TRUE", true],
  ["tRUE", "tRUE"],
  ["no", false],
  ["n", false],
  ["N", false],
  ["Off", false],
  ["OFF", false],
  ["false", false],
  ["nO", "nO"],
  ["~", null],
  ["null", null],
  ["Null", null],
  ["NULL", null],
  ["nULL", "nULL"],
  ["", null],
  ["<<", "<<", "a merge key only as a mapping key"],
  ["latest", "latest"],
  ["v1.2.3", "v1.2.3"],
  ["1.2.3-rc1", "1.2.3-rc1"],
  ["100Mi", "100Mi"],
  ["500m", "500m"],
  ["0.5", 0.5],
];

t.test("plain scalars resolve as go-yaml v2 + JSON (sigs.k8s.io/yaml) resolve them", async (t) => {
  for (const [source, want, why] of plain) {
    t.same(resolvePlainScalar(source), want, `${JSON.stringify(source)}${why === undefined ? "" : ` (${why})`}`);
  }
});

t.test("the same values come out of whole documents", async (t) => {
  for (const [source, want] of plain) {
    // "" and "<<" mean something else in a value position; a lone "-" starts a sequence there.
    if (source === "" || source === "<<" || source === "-") continue;
    const [doc] = parseYamlStream(`v: ${source}\n`);
    t.same(doc?.value, { v: want }, `v: ${source}`);
  }
});

const documents: [string, string, unknown][] = [
  ["quoted scalars are strings", "a: 'yes'\nb: \"12\"\nc: '~'\n", { a: "yes", b: "12", c: "~" }],
  ["an explicit !!str", "a: !!str 123\nb: !!str yes\n", { a: "123", b: "yes" }],
  ["an explicit !!int and !!float", 'a: !!int "12"\nb: !!float "1.5"\n', { a: 12, b: 1.5 }],
  ["an explicit !!timestamp stays text", "a: !!timestamp 2024-01-02\n", { a: "2024-01-02" }],
  ["!!binary is decoded into a string", "a: !!binary aGVsbG8=\n", { a: "hello" }],
  ["block scalars are strings", "a: |\n  12:30\nb: >-\n  yes\n", { a: "12:30\n", b: "yes" }],
  ["keys: numbers and booleans become their JSON text", "1: a\ntrue: b\n0x10: c\n", { "1": "a", true: "b", "16": "c" }],
  // As in Kubernetes: a plain key `y` or `on` is a boolean, so it becomes "true" (quote it to keep it).
  ["a plain key y is the boolean true", "y: 1\n'n': 2\n", { true: 1, n: 2 }],
  [
    "merge keys, the local key wins",
    "base: &b {p: 1, q: 2}\nm:\n  <<: *b\n  q: 3\n",
    { base: { p: 1, q: 2 }, m: { p: 1, q: 3 } },
  ],
  [
    "merge of a list of maps",
    "a: &a {p: 1}\nb: &b {q: 2}\nm:\n  <<: [*a, *b]\n",
    { a: { p: 1 }, b: { q: 2 }, m: { p: 1, q: 2 } },
  ],
  [
    "a ConfigMap as Kubernetes stores it",
    "data:\n  time: 12:30\n  date: 2024-01-02\n  enabled: yes\n  mode: 0755\n",
    { data: { time: "12:30", date: "2024-01-02", enabled: true, mode: 493 } },
  ],
];

for (const [name, text, want] of documents) {
  t.test(name, async (t) => {
    const [doc] = parseYamlStream(text);
    t.same(doc?.value, want);
  });
}
