// Structured logs: one JSON object a line (pino). On a terminal (`npm start` by hand) the same
// records are printed readably by pino-pretty; piped or under a supervisor they stay JSON.
import { Context } from '@temporalio/activity';
import { pino, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger } from 'pino';

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
type Level = (typeof LEVELS)[number];

function initialLevel(): Level {
  const level = process.env.KILN_LOG_LEVEL as Level | undefined;
  return level && LEVELS.includes(level) ? level : 'info';
}

function createRootLogger(): Logger {
  const options = {
    level: initialLevel(),
    base: { service: 'kiln' },
    // Credentials must never reach a log line, whatever object is logged.
    redact: { paths: ['*.authorization', '*.password', '*.token', '*.secret', 'req.headers.authorization'], censor: '[redacted]' },
  };
  if (process.stdout.isTTY && process.env.KILN_LOG_FORMAT !== 'json') {
    return pino(options, pinoPretty({ sync: true, colorize: true, singleLine: true, ignore: 'pid,hostname,service', translateTime: 'HH:MM:ss.l' }));
  }
  return pino(options);
}

let root: Logger | undefined;

/** The process's root logger (KILN_LOG_LEVEL; KILN_LOG_FORMAT=json keeps JSON on a terminal too). */
export function rootLogger(): Logger {
  root ??= createRootLogger();
  return root;
}

export function setLogLevel(level: Level): void {
  rootLogger().level = level;
}

export interface ActivityLog {
  info(message: string, attrs?: Record<string, unknown>): void;
  warn(message: string, attrs?: Record<string, unknown>): void;
  error(message: string, attrs?: Record<string, unknown>): void;
}

/**
 * The running activity's logger: Temporal's, so each line carries its workflow id, build id
 * (infra/workers.ts) and attempt. Outside an activity (direct calls in tests) the root logger.
 */
export function activityLog(): ActivityLog {
  try {
    return Context.current().log;
  } catch {
    const log = rootLogger().child({ component: 'activity' });
    return {
      info: (message, attrs) => log.info(attrs ?? {}, message),
      warn: (message, attrs) => log.warn(attrs ?? {}, message),
      error: (message, attrs) => log.error(attrs ?? {}, message),
    };
  }
}
