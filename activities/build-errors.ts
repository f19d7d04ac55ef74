import type { UserFaultCode } from '../domain/errors';

/**
 * `code`: a stable machine code (`step_failed`, `dockerfile_syntax`, ...), or `transient` (retry).
 * `message`: what a person can act on, e.g. `RUN at Dockerfile:3 exited with code 3`.
 */
export type BuildFailure =
  | { code: UserFaultCode; message: string; retryable: false }
  | { code: 'transient'; message: string; retryable: true };

// Faults of the machinery, not of the user's build: retried with backoff.
const TRANSIENT = [
  /connection refused/i,
  /connection reset/i,
  /i\/o timeout/i,
  /no such host/i,
  /TLS handshake timeout/i,
  // gRPC Unavailable: buildkitd went away mid-solve (crash, restart) or cannot be reached. buildctl
  // prints it either way: `rpc error: code = Unavailable desc = error reading from server: EOF`,
  // or (its errdefs form) `Unavailable: error reading from server: EOF`, `Unavailable: connection error`.
  /\bcode = Unavailable\b/,
  /\bUnavailable: /,
  /transport is closing/i,
  /context deadline exceeded/i,
  /broken pipe/i,
  /server misbehaving/i,
  /\b50[234]\b.*(Bad Gateway|Service Unavailable|Gateway Timeout)/i,
  /unexpected EOF/i,
  /dial unix .*: connect: no such file or directory/i,
];

/**
 * Reads buildctl's plain (non-JSON) stderr lines — the `Dockerfile:N` excerpt and the final
 * `error: ...` line — and tells a user fault from a transient one.
 */
export function classifyBuildFailure(plainOutput: string[], exit: { code: number | null; signal: string | null }): BuildFailure {
  const errorLine = [...plainOutput].reverse().find((l) => l.startsWith('error:'));
  if (!errorLine) {
    const tail = plainOutput.slice(-5).join('\n') || `buildctl exited with ${exit.signal ?? `code ${exit.code}`}`;
    return { code: 'transient', message: tail, retryable: true };
  }
  const error = errorLine.replace(/^error:\s*(failed to solve:\s*)?/, '');
  const location = findLocation(plainOutput);
  const at = location ? ` at ${location.file}:${location.line}` : '';

  // A step's own process exited non-zero: the user's command failed, whatever it printed (its
  // command line and output may well say "connection refused"). Checked before the transient list.
  const exitCode = /did not complete successfully: exit code: (\d+)/.exec(error);
  if (exitCode) {
    const instruction = location?.instruction ?? 'RUN';
    return { code: 'step_failed', message: `${instruction}${at} exited with code ${exitCode[1]}`, retryable: false };
  }
  if (TRANSIENT.some((re) => re.test(error))) return { code: 'transient', message: error, retryable: true };

  const parse = /dockerfile parse error on line (\d+): (.*)/.exec(error);
  if (parse) {
    return { code: 'dockerfile_syntax', message: `Dockerfile syntax error on line ${parse[1]}: ${parse[2]}`, retryable: false };
  }
  const missing = /failed to calculate checksum of ref [^:]+::[^:]+: "([^"]+)": not found/.exec(error) ?? /"([^"]+)": not found$/.exec(error);
  if (missing && !/resolve source metadata/.test(error)) {
    const instruction = location?.instruction ?? 'COPY';
    return { code: 'file_not_found', message: `${instruction}${at}: "${missing[1]}" was not found in the build context`, retryable: false };
  }
  const base = /failed to resolve source metadata for (\S+?):? .*(not found|unauthorized|denied|forbidden|insufficient_scope)/i.exec(error);
  if (base && !/not found/i.test(base[2]!)) {
    // The registry checks rights before existence: a missing repository of another namespace looks
    // the same as a private one, and both are refused.
    return {
      code: 'image_access_denied',
      message:
        `Access to image ${base[1]} was denied${at}: the registry refused this build's credentials ` +
        "(an image private to another namespace, one that does not exist, or a registry that needs credentials the build was not given)",
      retryable: false,
    };
  }
  if (base) {
    return { code: 'base_image_not_found', message: `Base image ${base[1]} could not be pulled (${base[2]})${at}`, retryable: false };
  }
  // Kiln's buildkitd grants no insecure entitlement and buildctl asks for none.
  const entitlement = /(?:granting entitlement )?\b(network\.host|security\.insecure)\b (?:is not allowed|.*not allowed)/.exec(error);
  if (entitlement) {
    const flag = entitlement[1] === 'network.host' ? 'RUN --network=host' : 'RUN --security=insecure';
    return {
      code: 'entitlement_denied',
      message: `${flag}${at} is not allowed: build steps run in Kiln's sandbox (entitlement ${entitlement[1]} is off)`,
      retryable: false,
    };
  }
  const target = /target stage "([^"]+)" could not be found/.exec(error);
  if (target) return { code: 'invalid_target', message: `Target stage "${target[1]}" is not in the Dockerfile`, retryable: false };
  return { code: 'build_failed', message: `${error}${at && !error.includes('Dockerfile:') ? ` (${at.trim()})` : ''}`, retryable: false };
}

/** The `Dockerfile:3` header and the `>>>` line buildctl prints above the error. */
function findLocation(lines: string[]): { file: string; line: number; instruction: string | null } | null {
  let found: { file: string; line: number; instruction: string | null } | null = null;
  for (let i = 0; i < lines.length; i++) {
    const header = /^(\S+):(\d+)$/.exec(lines[i]!);
    if (header && lines[i + 1]?.startsWith('-----')) {
      found = { file: header[1]!, line: Number(header[2]), instruction: null };
    }
    const marked = /^\s*\d+\s*\|\s*>>>\s*(\w+)/.exec(lines[i]!);
    if (found && marked && found.instruction === null) found.instruction = marked[1]!.toUpperCase();
  }
  return found;
}
