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
  t.doesNotThrow(() => new ParameterSource({ ARGOCD_APP_PARAMETERS: "null" }));
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
