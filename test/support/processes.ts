// Looks for processes on this machine by their command line (RUN steps run as ordinary
// processes under buildkitd's runc; arm64 ones under qemu-aarch64, with the same arguments).
import { readdirSync, readFileSync } from 'node:fs';

export interface FoundProcess {
  pid: number;
  argv: string[];
}

/** Processes whose command line (argv joined by spaces) contains `text`. */
export function findProcesses(text: string): FoundProcess[] {
  const found: FoundProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue; // exited meanwhile
    }
    if (argv.join(' ').includes(text)) found.push({ pid: Number(entry), argv });
  }
  return found;
}

export async function waitFor<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
