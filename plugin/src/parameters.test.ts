import t from "tap";
import { ParameterSource, escaped, installEnvName, parseBoolean, parseSize } from "./parameters.ts";

t.test("Argo CD's escaping of parameter names", async (t) => {
  t.equal(escaped("waiter-image"), "WAITER_IMAGE");
  t.equal(escaped("a.b/c"), "A_B_C");
  t.equal(installEnvName("reconciler-url"), "DIGEST_MIGRATIONS_RECONCILER_URL");
});

t.test("precedence: Application parameter, then plugin env, then install default", async (t) => {
  const cases: [Record<string, string>, string | undefined][] = [
    [{}, undefined],
    [{ DIGEST_MIGRATIONS_WAITER_IMAGE: "install" }, "install"],
    [{ DIGEST_MIGRATIONS_WAITER_IMAGE: "install", ARGOCD_ENV_WAITER_IMAGE: "env" }, "env"],
    [{ ARGOCD_ENV_WAITER_IMAGE: "env", PARAM_WAITER_IMAGE: "param" }, "param"],
    [{ PARAM_WAITER_IMAGE: "param", ARGOCD_APP_PARAMETERS: '[{"name":"waiter-image","string":"json"}]' }, "json"],
    [{ PARAM_WAITER_IMAGE: "", ARGOCD_ENV_WAITER_IMAGE: "env" }, "env"],
  ];
  for (const [env, expected] of cases)
    t.equal(new ParameterSource(env).string("waiter-image"), expected, JSON.stringify(env));
});

t.test("arrays and maps", async (t) => {
  const json = new ParameterSource({
    ARGOCD_APP_PARAMETERS: JSON.stringify([
      { name: "helm-values-files", array: ["a.yaml", "b.yaml"] },
      { name: "helm-parameters", map: { "image.tag": "v1" } },
    ]),
    PARAM_HELM_VALUES_FILES_0: "ignored.yaml",
  });
  t.same(json.array("helm-values-files"), ["a.yaml", "b.yaml"]);
  t.same(json.map("helm-parameters"), { "image.tag": "v1" });
  const env = new ParameterSource({ PARAM_HELM_VALUES_FILES_0: "x.yaml", PARAM_HELM_VALUES_FILES_1: "y.yaml" });
  t.same(env.array("helm-values-files"), ["x.yaml", "y.yaml"]);
  t.same(new ParameterSource({ ARGOCD_ENV_HELM_VALUES_FILES: "p.yaml, q.yaml" }).array("helm-values-files"), [
    "p.yaml",
    "q.yaml",
  ]);
  t.same(env.map("helm-parameters"), {});
});

t.test("malformed ARGOCD_APP_PARAMETERS is an error", async (t) => {
  t.throws(() => new ParameterSource({ ARGOCD_APP_PARAMETERS: "{" }), /not JSON/);
  t.throws(() => new ParameterSource({ ARGOCD_APP_PARAMETERS: "{}" }), /not a JSON array/);
  t.throws(() => new ParameterSource({ ARGOCD_APP_PARAMETERS: "[{}]" }), /without a name/);
});

t.test("ARGOCD_APP_PARAMETERS as Argo CD sends it: absent, null, empty, and each kind of value", async (t) => {
  // No plugin section: the variable is not set. A plugin section without parameters: "null".
  for (const value of [undefined, "", "null", "[]"]) {
    const p = new ParameterSource(value === undefined ? {} : { ARGOCD_APP_PARAMETERS: value });
    t.equal(p.string("waiter-image"), undefined, `${String(value)}: nothing set`);
    t.same(p.array("helm-values-files"), []);
    t.same(p.map("helm-parameters"), {});
  }
  const set = (entries: unknown[]): ParameterSource =>
    new ParameterSource({ ARGOCD_APP_PARAMETERS: JSON.stringify(entries), ARGOCD_ENV_WAITER_IMAGE: "env" });
  t.equal(set([{ name: "waiter-image" }]).string("waiter-image"), "env", "an entry without a value is unset");
  t.equal(set([{ name: "waiter-image", string: "" }]).string("waiter-image"), "env", "an empty string is unset");
  t.same(set([{ name: "helm-values-files", array: [] }]).array("helm-values-files"), [], "an empty array is kept");
  t.same(set([{ name: "helm-parameters", map: {} }]).map("helm-parameters"), {});
  t.same(set([{ name: "helm-parameters", map: { "a.b": "1", "c[0]": "x" } }]).map("helm-parameters"), {
    "a.b": "1",
    "c[0]": "x",
  });
});

t.test("a parameter this plugin does not know, or of the wrong kind, is a clear error", async (t) => {
  const parse = (entries: unknown[]) => () => new ParameterSource({ ARGOCD_APP_PARAMETERS: JSON.stringify(entries) });
  t.throws(
    parse([{ name: "waiter-imge", string: "w:1" }]),
    /spec\.source\.plugin\.parameters: "waiter-imge" is not a parameter of this plugin \(parameters: waiter-image, reconciler-url, /,
  );
  t.throws(
    parse([{ name: "helm-values-files", string: "a.yaml" }]),
    /"helm-values-files" takes an array \(array: …\), not a string/,
  );
  t.throws(
    parse([{ name: "helm-parameters", array: ["a=b"] }]),
    /"helm-parameters" takes a map \(map: …\), not an array/,
  );
  t.throws(parse([{ name: "recurse", map: { a: "b" } }]), /"recurse" takes a string \(string: …\), not a map/);
  t.throws(
    parse([
      { name: "include", string: "*.yaml" },
      { name: "include", string: "x" },
    ]),
    /"include" is given more than once/,
  );
  t.throws(parse([{ name: "helm-values-files", array: [1] }]), /the array must hold strings/);
  t.throws(parse([{ name: "helm-parameters", map: { a: 1 } }]), /the map's values must be strings/);
});

t.test("sizes and booleans", async (t) => {
  t.equal(parseSize("s", "10"), 10);
  t.equal(parseSize("s", "2Ki"), 2048);
  t.equal(parseSize("s", "4Mi"), 4 * 1024 * 1024);
  t.throws(() => parseSize("max-file-size", "4MB"), /max-file-size/);
  t.equal(parseBoolean("b", "TRUE"), true);
  t.equal(parseBoolean("b", "false"), false);
  t.throws(() => parseBoolean("allow-unmatched-migrators", "yes"), /allow-unmatched-migrators/);
});
