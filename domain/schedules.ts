// Cron schedules of build rules, as Temporal Schedules run them (one Temporal schedule per entry).
// No I/O here: the API syncs them (api/rule-schedules.ts), the workflow builds (workflows/scheduled-build.ts).

/** Entries per rule. */
export const MAX_RULE_SCHEDULES = 5;

const num = (re: string) => `(?:${re})`;
/** One field of a five-field cron line: `*`, `*\/n`, `a`, `a-b`, `a-b/n`, comma lists of those. */
function field(value: string): string {
  const item = `(?:\\*(?:/[1-9][0-9]?)?|${value}(?:-${value}(?:/[1-9][0-9]?)?)?)`;
  return `${item}(?:,${item}){0,19}`;
}
const MINUTE = num('[0-5]?[0-9]');
const HOUR = num('[01]?[0-9]|2[0-3]');
const DAY = num('0?[1-9]|[12][0-9]|3[01]');
const MONTH = num('0?[1-9]|1[0-2]');
const WEEKDAY = num('[0-6]');

/** minute hour day-of-month month day-of-week, numbers only (0 = Sunday), single spaces. */
export const CRON_RE = new RegExp(`^${[MINUTE, HOUR, DAY, MONTH, WEEKDAY].map(field).join(' ')}$`);

/** What a pattern cannot state: every range runs upwards (`5-3` is refused). */
export function cronIssues(cron: string): string[] {
  const issues: string[] = [];
  for (const range of cron.matchAll(/(\d+)-(\d+)/g)) {
    if (Number(range[1]) > Number(range[2])) issues.push(`range ${range[0]} runs backwards`);
  }
  return issues;
}

export interface RuleSchedule {
  cron: string;
  timeZone: string;
}

/** Temporal schedule id of a rule's n-th entry: `rule-<ruleId>-<n>`. */
export const ruleScheduleId = (ruleId: string, index: number) => `rule-${ruleId}-${index}`;

/** Workflow id prefix of the scheduled action; Temporal appends the scheduled time. */
export const scheduledBuildWorkflowId = (ruleId: string, index: number) => `scheduled-${ruleId}-${index}`;
