import http from "node:http";
import t from "tap";
import { listen } from "./cli.ts";

t.test("two servers share a port with reusePort; without it the second one fails", async (t) => {
  const a = http.createServer((_req, res) => res.end("a"));
  const b = http.createServer((_req, res) => res.end("b"));
  const c = http.createServer((_req, res) => res.end("c"));
  t.teardown(() => {
    for (const s of [a, b, c]) s.close();
  });
  const { port } = await listen(a, 0, "127.0.0.1", true);
  const second = await listen(b, port, "127.0.0.1", true);
  t.equal(second.port, port, "the second replica binds the same port");
  await t.rejects(listen(c, port, "127.0.0.1"), { code: "EADDRINUSE" }, "a server without reusePort cannot");
  // Connections reach both (the kernel spreads them by connection); ask until each has answered.
  const answered = new Set<string>();
  for (let i = 0; i < 200 && answered.size < 2; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
    answered.add(await res.text());
  }
  t.same([...answered].sort(), ["a", "b"], "both servers answer");
});
