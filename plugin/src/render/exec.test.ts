// rendererReason on renderers' real error output (testdata/, recorded from kubectl 1.32's klog lines) and on
// helm's and kubectl 1.33's forms; plugin/test/renderer-errors.test.ts runs the real binaries.
import { readFileSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";
import t from "tap";
import { MAX_REASON, rendererReason } from "./exec.ts";

const testdata = (name: string): string => readFileSync(path.join(import.meta.dirname, "testdata", name), "utf8");

t.test("kubectl 1.32: the err=< block of a klog line, all of it, on one line", async (t) => {
  const reason = rendererReason(testdata("kubectl-1.32-remote-base.stderr"));
  t.equal(
    reason,
    "accumulating resources: accumulation err='accumulating resources from 'https://127.0.0.1:1/team/base.git//deploy?ref=main': " +
      'Get "https://127.0.0.1:1/team/base.git//deploy?ref=main": dial tcp 127.0.0.1:1: connect: connection refused\': ' +
      "failed to run '/usr/bin/git fetch --depth=1 https://127.0.0.1:1/team/base.git main': fatal: unable to access " +
      "'https://127.0.0.1:1/team/base.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server: exit status 128",
  );
  t.notMatch(reason, /E1201|run\.go|command failed|err=</, "klog's header is not the reason");
});

t.test("kubectl 1.32: a quoted err value is unquoted", async (t) => {
  t.equal(
    rendererReason(testdata("kubectl-1.32-missing-resource.stderr")),
    "accumulating resources: accumulation err='accumulating resources from 'missing.yaml': evalsymlink failure on " +
      "'/tmp/rec/missing.yaml' : lstat /tmp/rec/missing.yaml: no such file or directory': must build at directory: " +
      "not a valid directory: evalsymlink failure on '/tmp/rec/missing.yaml' : lstat /tmp/rec/missing.yaml: no such file or directory",
  );
  t.equal(
    rendererReason(
      'E0102 03:04:05.000001    7 run.go:72] "command failed" err="invalid Kustomization: json: unknown field \\"bogus\\""\n',
    ),
    'invalid Kustomization: json: unknown field "bogus"',
  );
});

t.test("helm and kubectl 1.33: from the first error line to the end, helm's --debug hint left out", async (t) => {
  t.equal(
    rendererReason(
      'Error: x/templates/a.yaml:5:15\n  executing "x/templates/a.yaml" at <.Values.nope.deeper>:\n    nil pointer evaluating interface {}.deeper\n\nUse --debug flag to render out invalid YAML\n',
    ),
    'Error: x/templates/a.yaml:5:15 executing "x/templates/a.yaml" at <.Values.nope.deeper>: nil pointer evaluating interface {}.deeper',
  );
  t.equal(
    rendererReason(
      "walk.go:74: found symbolic link in path\nError: execution error at (x/templates/a.yaml:1:3): no database configured\n",
    ),
    "Error: execution error at (x/templates/a.yaml:1:3): no database configured",
    "warnings before the error line are not the reason",
  );
  t.equal(
    rendererReason("error: accumulating resources: 'x': fatal: boom\n: exit status 128\n"),
    "error: accumulating resources: 'x': fatal: boom: exit status 128",
  );
  t.equal(rendererReason("something odd\nhappened\n"), "something odd happened", "no error line: all of it");
  t.equal(rendererReason("\n \n"), undefined);
  t.equal(rendererReason("\u001b[31mError:\u001b[0m red\n"), "Error: red", "colour codes removed");
});

t.test("a reason is bounded, keeping its start and its end", async (t) => {
  const long = `Error: ${"a".repeat(3000)} the real cause`;
  const reason = rendererReason(long) ?? "";
  t.ok(reason.length <= MAX_REASON + 40, `${reason.length} characters`);
  t.ok(reason.startsWith("Error: aaa"));
  t.ok(reason.endsWith("the real cause"));
  t.match(reason, /… \(\d+ characters left out\) …/);
  fc.assert(
    fc.property(fc.string({ maxLength: 5000 }), (s) => {
      const r = rendererReason(s);
      return r === undefined || (!r.includes("\n") && r.length <= MAX_REASON + 40);
    }),
  );
});
