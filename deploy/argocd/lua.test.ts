// The gopher-lua runner itself: JSON values survive the trip into Lua and back as Argo CD encodes them,
// and a script sees exactly the libraries Argo CD opens for argocd-cm scripts (package, base, table, and
// time/date only through require("os")), under Argo CD's 1 s limit.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import t from "tap";
import { runScript } from "./lua.ts";

const dir = mkdtempSync(path.join(tmpdir(), "argocd-lua-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let scripts = 0;
function script(source: string): string {
  const file = path.join(dir, `script-${scripts++}.lua`);
  writeFileSync(file, source);
  return file;
}
const returnObj = script("return obj\n");

// JSON values the trip keeps as they are: no null (nil is absence) and no empty object or array (an empty
// Lua table has no shape; Argo CD's encoder writes it as []).
const key = fc.string({ maxLength: 8 }).filter((k) => k !== "__proto__");
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
    fc.integer(),
    fc.string({ maxLength: 20 }),
    fc.array(tie("value"), { minLength: 1, maxLength: 4 }),
    fc.dictionary(key, tie("value"), { minKeys: 1, maxKeys: 4 }),
  ),
}));

t.test("values survive the trip into Lua and back", async (t) => {
  fc.assert(
    fc.property(fc.dictionary(key, value, { minKeys: 1, maxKeys: 6 }), (obj) => {
      t.same(runScript(returnObj, obj), obj);
    }),
    { numRuns: 40 },
  );
  t.same(runScript(returnObj, { a: "é\u0000\n", n: 1e21 }), { a: "é\u0000\n", n: 1e21 }, "bytes and large numbers");
});

t.test("Argo CD's encoding of Lua tables", async (t) => {
  t.same(runScript(script("return {}"), {}), [], "an empty table is []");
  t.same(runScript(script("return {1, 2, {a = 1}}"), {}), [1, 2, { a: 1 }]);
  t.throws(() => runScript(script("return {1, nil, 3}"), {}), /cannot encode sparse array/);
  t.throws(() => runScript(script("return {1, a = 2}"), {}), /cannot encode mixed or invalid key types/);
  t.throws(
    () => runScript(script("local x = {} return {a = x, b = x}"), {}),
    /cannot encode recursively nested tables/,
  );
  t.throws(() => runScript(script("return {f = print}"), {}), /cannot encode function to JSON/);
});

t.test("the libraries are Argo CD's", async (t) => {
  const obj = { metadata: { name: "m" } };
  const refused: Array<[string, string, RegExp]> = [
    ["no string library", 'return { s = string.format("%d", 1) }', /attempt to index a non-table object\(nil\)/],
    ["no string methods", 'return { n = ("abc"):len() }', /attempt to index a non-table object\(string\)/],
    ["no math library", "return { n = math.floor(1.5) }", /attempt to index a non-table object\(nil\)/],
    ["no io library", 'return { f = io.open("/etc/hostname") }', /attempt to index a non-table object\(nil\)/],
    ["no global os: only require('os')", "return { t = os.time() }", /attempt to index a non-table object\(nil\)/],
    ["require finds no io module", 'local io = require("io") return {}', /module io not found/],
    [
      "the os module has only time and date",
      'local os = require("os") os.execute("true") return {}',
      /attempt to call a non-function object/,
    ],
  ];
  for (const [name, source, error] of refused) t.throws(() => runScript(script(source), obj), error, name);

  const seen = runScript(
    script(
      'local os = require("os") return { name = obj.metadata.name, n = table.getn({1, 2}), t = os.time(), ' +
        'd = os.date("!%Y-%m-%dT%H:%M:%SZ"), tableTime = type(table.time), pairs = type(pairs), pcall = type(pcall), ' +
        "package = type(package), dofile = type(dofile), params = actionParams.replicas }",
    ),
    obj,
    "value",
    { now: new Date("2024-05-01T10:11:12Z"), actionParams: { replicas: "3" } },
  );
  t.same(
    seen,
    {
      name: "m",
      n: 2,
      t: Date.parse("2024-05-01T10:11:12Z") / 1000,
      d: "2024-05-01T10:11:12Z",
      tableTime: "nil",
      pairs: "function",
      pcall: "function",
      package: "table",
      dofile: "function",
      params: "3",
    },
    "base, package and table libraries, require('os') with a fixed clock, actionParams as strings",
  );
  t.throws(() => runScript(script("while true do end"), obj), /context deadline exceeded/, "Argo CD's 1 s limit");
  t.throws(() => runScript(script("return {"), obj), /script-\d+\.lua.*(EOF|<eof>)/i, "syntax errors name the file");
  t.throws(() => runScript(script('error("boom")'), obj), /boom/);
});
