// The shop's `app` command: the application server. It refuses to start (exit 1, one clear line)
// unless every migration its build ships is applied — starting before its migrations is exactly
// what the product prevents, so a refusal in a test is a gating failure. Newer migrations are fine
// (a rollback to an older build runs against a newer, backwards-compatible schema). Every start is
// recorded in app_starts. Runs until SIGTERM; with PORT set it answers GET / with 200 (readiness).
import http from "node:http";
import { connect, databaseUrl, ensureTables, errorText, imageBuildId, podName, migrationFiles } from "./common.ts";

async function main(): Promise<void> {
  const url = databaseUrl("app");
  const buildId = imageBuildId() ?? null;
  const build = process.env.APP_BUILD ?? null;
  const pod = podName() ?? null;
  const required = migrationFiles().map((f) => f.version);
  const client = await connect(url);
  let missing: string[];
  try {
    await ensureTables(client);
    const applied = new Set(
      (await client.query<{ version: string }>("SELECT version FROM schema_migrations")).rows.map((r) => r.version),
    );
    missing = required.filter((v) => !applied.has(v));
    await client.query("INSERT INTO app_starts (build_id, build, pod, ok, missing) VALUES ($1, $2, $3, $4, $5)", [
      buildId,
      build,
      pod,
      missing.length === 0,
      missing,
    ]);
  } finally {
    await client.end().catch(() => undefined);
  }
  if (missing.length > 0) {
    console.error(
      `app ${build ?? "?"}: refusing to start: migrations ${missing.join(", ")} are not applied ` +
        `(this build needs schema ${required.at(-1) ?? "none"})`,
    );
    process.exit(1);
  }
  const shop = process.env.SHOP_NAME ?? "shop";
  console.log(
    `app ${build ?? "?"}: ${shop} is open (schema ${required.at(-1) ?? "none"}, build ${buildId ?? "unknown"})`,
  );
  const server = process.env.PORT
    ? http.createServer((_req, res) => res.end("ok\n")).listen(Number(process.env.PORT), "127.0.0.1")
    : undefined;
  const keepAlive = setInterval(() => undefined, 60_000);
  process.once("SIGTERM", () => {
    console.log(`app ${build ?? "?"}: closing`);
    clearInterval(keepAlive);
    server?.close();
    process.exit(0);
  });
}

main().catch((err: unknown) => {
  console.error(`app: ${errorText(err)}`);
  process.exit(1);
});
