// The one error type the plugin reports to Argo CD. Argo CD shows generate's stderr in the UI when the
// command exits non-zero, so every failure becomes exactly one line that names the file and line, or the
// object, and the reason.

export class PluginError extends Error {
  constructor(message: string) {
    super(singleLine(message));
    this.name = "PluginError";
  }
}

/** Collapses whitespace runs that contain newlines so a message always fits on one line. */
export function singleLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

/** `file:line`, or just `file` when the line is unknown. */
export function where(file: string, line?: number): string {
  return line === undefined ? file : `${file}:${line}`;
}

/**
 * Is `error` (from realpath) a path that resolves to nothing: missing, a dangling symlink, a symlink
 * loop, or a file where a directory was expected? Anything else (permissions, I/O) is a real failure.
 */
export function unresolvable(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP";
}
