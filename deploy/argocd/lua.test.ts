// The bridge to the Lua interpreter and the sandbox itself: literals survive the trip into Lua and back,
// and the sandbox refuses what Argo CD's refuses (no string, math or io library; require only "os").
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import t from "tap";
import { runScript, toLuaLiteral } from "./lua.ts";

const dir = mkdtempSync(path.join(tmpdir(), "argocd-lua-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let scripts = 0;
function script(source: string): string {
  const file = path.join(dir, `script-${scripts++}.lua`);
  writeFileSync(file, source);
  return file;
}
const returnObj = script("return obj\n");

t.test("toLuaLiteral", async (t) => {
  const cases: Array<[string, unknown, string]> = [
    ["true", true, "true"],
    ["integer", 42, "42"],
    ["negative zero", -0, "0"],
    ["string with quotes and backslashes", 'a"b\\c', '"a\\"b\\\\c"'],
    ["control characters and UTF-8 as decimal escapes", "\n\u00e9", '"\\10\\195\\169"'],
    ["null is nil", null, "nil"],
    ["identifier keys bare, others bracketed", { a: 1, "b.c": 2 }, '{a = 1, ["b.c"] = 2}'],
    ["Lua keywords bracketed", { end: 1 }, '{["end"] = 1}'],
    ["arrays as sequences", [1, "x"], '{1, "x"}'],
  ];
  for (const [name, value, expected] of cases) t.equal(toLuaLiteral(value), expected, name);
  t.throws(() => toLuaLiteral({ a: [Number.NaN] }, "obj"), /obj\.a\[0\]: NaN has no Lua literal/);
  t.throws(() => toLuaLiteral({ f: () => 1 }, "obj"), /obj\.f: a function has no Lua literal/);
});

// JSON values the trip keeps as they are: no null (nil is absence) and no empty object or array (an empty
// Lua table has no shape; the harness writes [] as Argo CD's encoder does).
const key = fc.string({ unit: "binary", maxLength: 8 }).filter((k) => k !== "__proto__");
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
    fc.integer(),
    fc.string({ unit: "binary", maxLength: 20 }),
    fc.array(tie("value"), { minLength: 1, maxLength: 4 }),
    fc.dictionary(key, tie("value"), { minKeys: 1, maxKeys: 4 }),
  ),
}));

t.test("values survive the trip into Lua and back", async (t) => {
  fc.assert(
    fc.property(fc.dictionary(key, value, { minKeys: 1, maxKeys: 6 }), (obj) => {
      t.same(runScript(returnObj, obj), obj);
    }),
    { numRuns: 50 },
  );
});

t.test("the sandbox is Argo CD's", async (t) => {
  const obj = { metadata: { name: "m" } };
  const refused: Array<[string, string, RegExp]> = [
    ["no string library", 'return { s = string.format("%d", 1) }', /global 'string'/],
    ["no string methods", 'return { n = ("abc"):len() }', /attempt to index a string value/],
    ["no math library", "return { n = math.floor(1.5) }", /global 'math'/],
    ["no io library", 'return { f = io.open("/etc/hostname") }', /global 'io'/],
    ["require gives only os", 'local io = require("io") return {}', /module 'io' not found/],
    ["os is reduced to time and date", 'os.execute("true") return {}', /attempt to call field 'execute'/],
  ];
  for (const [name, source, error] of refused) t.throws(() => runScript(script(source), obj), error, name);

  t.same(
    runScript(
      script('local os = require("os") return { name = obj.metadata.name, n = table.getn({1, 2}), t = os.time() }'),
      obj,
      { now: new Date("2024-05-01T10:00:00Z") },
    ),
    { name: "m", n: 2, t: Date.parse("2024-05-01T10:00:00Z") / 1000 },
    'base and table libraries, require("os"), and a fixed clock',
  );
  t.same(runScript(script("return actionParams"), obj, { actionParams: { replicas: 3 } }), { replicas: 3 });
  t.same(runScript(script("return {}"), obj), [], "an empty table is encoded as [], as Argo CD does");
  t.throws(
    () => runScript(script("return {"), obj),
    /script-\d+\.lua:1: unexpected symbol near '<eof>'/,
    "syntax errors name the file",
  );
});
