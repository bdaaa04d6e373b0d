// A stand-in for one argocd-cmp-server sidecar: the plugin configuration it was started with, the
// sidecar's own environment, and the three calls the repo-server makes over its socket. Follows
// cmpserver/plugin/plugin.go (Service: CheckPluginConfiguration, MatchRepository → matchRepository,
// GenerateManifest → generateManifestGeneric → generateManifest; environ; runCommand) and
// util/cmp/stream.go ReceiveRepoStream, read in v2.6.15, v2.13.9, v2.14.21, v3.0.23 and v3.5.1.
//
// What it does not model: gRPC itself (a call is a function call; the stream is its tarball plus the
// metadata), parameter announcements (GetParametersAnnouncement), and provideGitCreds.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { cmdErrorText, exitText } from "./exec.ts";
import type { ExecRequest, Executor } from "./exec.ts";
import { goGlob, zglob } from "./globs.ts";
import { splitYamlToString } from "./manifest-stream.ts";
import { isDiscoveryConfigured, servedName } from "./plugin-config.ts";
import type { Command, PluginConfig } from "./plugin-config.ts";
import { extractRepository } from "./tgz.ts";
import type { ArgoCDVersion } from "./versions.ts";

/** cmpTimeoutBuffer: server-side work stops this long before the request's deadline. */
export const CMP_TIMEOUT_BUFFER_MS = 100;

export interface EnvEntry {
  name: string;
  value: string;
}

/** What the repo-server streams: ManifestRequestMetadata, then the tarball in chunks. */
export interface AppStream {
  metadata: { appName: string; appRelPath: string; env: EnvEntry[]; checksum: string; size: number };
  tgz: Buffer;
}

export interface CmpServerOptions {
  config: PluginConfig;
  version: ArgoCDVersion;
  /** The sidecar container's environment (image ENV, the container's env, what Kubernetes adds). */
  sidecarEnv: Readonly<Record<string, string>>;
  /** How a command runs: the seam (see exec.ts). */
  executor: Executor;
  /** The sidecar's work directory (common.GetCMPWorkDir: $ARGOCD_CMP_WORKDIR, else its /tmp). */
  workDir?: string;
}

/** An error returned over the socket; the repo-server wraps its message. */
export class CmpError extends Error {
  override name = "CmpError";
}

export class CmpServer {
  readonly config: PluginConfig;
  readonly version: ArgoCDVersion;
  readonly #sidecarEnv: Readonly<Record<string, string>>;
  readonly #executor: Executor;
  readonly #workDir: string;
  /** Every command this sidecar ran, in order, for tests. */
  readonly runs: ExecRequest[] = [];
  /** How many repository streams it received, for tests. */
  streamsReceived = 0;

  constructor(options: CmpServerOptions) {
    this.config = options.config;
    this.version = options.version;
    this.#sidecarEnv = options.sidecarEnv;
    this.#executor = options.executor;
    this.#workDir = options.workDir ?? tmpdir();
  }

  /** The socket's file name under /home/argocd/cmp-server/plugins (PluginConfig.Address). */
  get socketName(): string {
    return `${servedName(this.config)}.sock`;
  }

  /** CheckPluginConfiguration (from v2.13; the repo-server also asks it for provideGitCreds). */
  checkPluginConfiguration(): { isDiscoveryConfigured: boolean; provideGitCreds: boolean } {
    return {
      isDiscoveryConfigured: isDiscoveryConfigured(this.config),
      provideGitCreds: Boolean(this.config.spec.provideGitCreds),
    };
  }

  /** environ(): the request's entries as NAME=value, nameless ones dropped, empty values too before v3.0. */
  environ(entries: readonly EnvEntry[]): string[] {
    return entries
      .filter((e) => e.name !== "" && (this.version.keepEmptyEnvValues || e.value !== ""))
      .map((e) => `${e.name}=${e.value}`);
  }

  /** os.Environ() of the sidecar followed by the request's entries: a request entry wins over the sidecar's. */
  commandEnv(entries: readonly EnvEntry[]): string[] {
    return [...Object.entries(this.#sidecarEnv).map(([k, v]) => `${k}=${v}`), ...this.environ(entries)];
  }

  /** MatchRepository: unpacks the stream and applies discover (fileName, else find.glob, else find.command). */
  async matchRepository(
    stream: AppStream,
    deadline?: number,
  ): Promise<{ isSupported: boolean; isDiscoveryEnabled: boolean }> {
    return this.#withWorkDir(stream, async (workDir) => {
      // securejoin.SecureJoin: the relative path is resolved as if workDir were the root, so ".." cannot leave it.
      const appPath = path.join(workDir, path.normalize(`/${stream.metadata.appRelPath}`));
      const discover = this.config.spec.discover ?? {};
      if (discover.fileName) {
        try {
          return { isSupported: goGlob(path.join(appPath, discover.fileName)).length > 0, isDiscoveryEnabled: true };
        } catch (error) {
          throw new CmpError(
            `match repository error: error finding filename match for pattern ${JSON.stringify(path.join(appPath, discover.fileName))}: ${(error as Error).message}`,
          );
        }
      }
      if (discover.find?.glob) {
        return { isSupported: zglob(path.join(appPath, discover.find.glob)).length > 0, isDiscoveryEnabled: true };
      }
      if (discover.find?.command?.length) {
        try {
          const out = await this.#run(discover.find, appPath, this.commandEnv(stream.metadata.env), deadline);
          return { isSupported: out !== "", isDiscoveryEnabled: true };
        } catch (error) {
          throw new CmpError(`match repository error: error running find command: ${(error as Error).message}`);
        }
      }
      return { isSupported: false, isDiscoveryEnabled: false };
    });
  }

  /** GenerateManifest: unpacks the stream, runs init then generate in the app's path, splits stdout. */
  async generateManifest(stream: AppStream, deadline?: number): Promise<{ manifests: string[] }> {
    return this.#withWorkDir(stream, async (workDir) => {
      const appPath = path.normalize(path.join(workDir, stream.metadata.appRelPath));
      if (!appPath.startsWith(workDir)) throw new CmpError("illegal appPath: out of workDir bound");
      const env = this.commandEnv(stream.metadata.env);
      try {
        if (this.config.spec.init?.command?.length) await this.#run(this.config.spec.init, appPath, env, deadline);
        const out = await this.#run(this.config.spec.generate, appPath, env, deadline);
        return { manifests: splitYamlToString(out, this.version.decoder) };
      } catch (error) {
        throw new CmpError(`error generating manifests: ${(error as Error).message}`);
      }
    });
  }

  async #withWorkDir<T>(stream: AppStream, body: (workDir: string) => Promise<T>): Promise<T> {
    // getTempDirMustCleanup: a fresh directory per request, removed afterwards.
    const workDir = mkdtempSync(path.join(this.#workDir, "cmp-"));
    try {
      this.streamsReceived++;
      try {
        extractRepository(workDir, stream.tgz, stream.metadata.checksum, Boolean(this.config.spec.preserveFileMode));
      } catch (error) {
        throw new CmpError(`error receiving stream: error receiving tgz file: ${(error as Error).message}`);
      }
      return await body(workDir);
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  }

  /** runCommand: argv = command + args, the deadline less cmpTimeoutBuffer; CmdError on failure. */
  async #run(command: Command, cwd: string, env: string[], deadline?: number): Promise<string> {
    const argv = [...(command.command ?? []), ...(command.args ?? [])];
    if (argv.length === 0) throw new Error("Command is empty");
    const request: ExecRequest = {
      argv,
      cwd,
      env,
      ...(deadline === undefined ? {} : { deadline: deadline - CMP_TIMEOUT_BUFFER_MS }),
    };
    this.runs.push(request);
    const result = await this.#executor(request);
    if (result.code !== 0 || result.signal !== null)
      throw new Error(cmdErrorText(argv, exitText(result), result.stderr));
    return result.stdout.replace(/\n$/, "");
  }
}
