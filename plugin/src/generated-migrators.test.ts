import t from "tap";
import { parseCommand, splitShellWords } from "./generated-migrators.ts";

t.test("shell-style word splitting", async (t) => {
  const cases: [string, string[]][] = [
    ["python manage.py migrate", ["python", "manage.py", "migrate"]],
    ["  a   b  ", ["a", "b"]],
    ["sh -c 'echo $HOME && true'", ["sh", "-c", "echo $HOME && true"]],
    ['say "a \\"quoted\\" word"', ["say", 'a "quoted" word']],
    ["a\\ b c", ["a b", "c"]],
    ["empty '' arg", ["empty", "", "arg"]],
    ["", []],
  ];
  for (const [text, words] of cases) t.same(splitShellWords(text, "w"), words, text);
  t.throws(() => splitShellWords("a 'b", "where"), /where: unterminated ' quote/);
});

t.test("commands as JSON arrays or words", async (t) => {
  t.same(parseCommand('["a b", "c"]', "w"), ["a b", "c"]);
  t.same(parseCommand("a b", "w"), ["a", "b"]);
  t.throws(() => parseCommand("[1, 2]", "w"), /not a JSON array of strings/);
  t.throws(() => parseCommand("  ", "w"), /empty command/);
});
